"""oi_models: train, evaluate and serve Open Images detection and classification models."""

import setuptools

# The TensorFlow stack moves together: TF, Keras 2 (tf-keras), Model Garden and TFDS of one release.
INSTALL_REQUIRES = [
    "tensorflow==2.20.0",
    "tf-keras==2.20.1",
    "tf-models-official==2.20.0",
    "tensorflow-datasets==4.9.10",
    "numpy>=1.26,<3",
    "absl-py>=1.4,<3",
    "pyarrow>=14,<27",  # streaming CSV parser behind the annotation readers
    "pillow>=10,<14",  # image checks in the sample maker and the builder's bad-image report
    "psutil>=5.9,<8",  # peak-memory figures in reports and benchmarks
    "tqdm>=4.60,<5",
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        "scikit-learn>=1.4,<2",
        "pandas>=2,<4",
    ],
    "beam": ["apache-beam>=2.60,<3"],
    "plots": ["matplotlib>=3.7,<4"],
}

CONSOLE_SCRIPTS = [
    "oi-demo=oi_models.demo:run",
    "oi-make-sample=oi_models.data.make_sample:run",
]

setuptools.setup(
    name="oi_models",
    version="0.1.0",
    description=__doc__,
    packages=setuptools.find_packages(include=["oi_models", "oi_models.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
