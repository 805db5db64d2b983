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
    "opencv-python-headless>=4.8,<6",  # the detector pipeline's resize (Model Garden depends on it too)
    "mlcroissant>=1.1,<2",  # imported by TFDS's `tfds build` command, which TFDS does not install
]

# Beam 2.77 caps pillow < 13, protobuf < 7 and pyarrow < 26; the ranges above admit those.
BEAM = "apache-beam==2.77.0"

# The data tools (oi_models/tools): S3 downloads, DuckDB and PostgreSQL.
TOOLS = [
    "boto3>=1.34,<2",
    "urllib3>=1.26,<3",
    "duckdb>=1.1,<3",
    "psycopg[binary]>=3.1,<4",
]

EXTRAS_REQUIRE = {
    "test": [
        *TOOLS,
        "moto[server]>=5,<6",  # A real S3 API on loopback for the downloader's tests.
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        "scikit-learn>=1.4,<2",
        "pandas>=2,<4",
        "dill>=0.3.8,<1",  # tfds.testing imports it; TFDS does not install it
        BEAM,  # The Beam build is tested against the plain one.
        # notebooks/*.ipynb executed top to bottom by tests/notebooks (kernel: this interpreter).
        "nbclient>=0.10,<1",
        "nbformat>=5.9,<6",
        "ipykernel>=6.29,<8",
    ],
    "beam": [BEAM],  # Full-scale TFDS builds on Dataflow, Spark or Flink.
    "plots": ["matplotlib>=3.7,<4"],
    "tools": TOOLS,
}

CONSOLE_SCRIPTS = [
    "oi-build-dataset=oi_models.datasets.build:run",
    "oi-classify=oi_models.serving.classify:run",
    "oi-convert-checkpoint=oi_models.modeling.convert_checkpoint:run",
    "oi-demo=oi_models.demo:run",
    "oi-detect=oi_models.serving.detect:run",
    "oi-download=oi_models.tools.download:run",
    "oi-evaluate=oi_models.evaluation.cli:run",
    "oi-export=oi_models.serving.export_saved_model:run",
    "oi-image-sizes=oi_models.tools.image_sizes:run",
    "oi-make-sample=oi_models.datasets.make_sample:run",
    "oi-to-sql=oi_models.tools.to_sql:run",
    "oi-train=oi_models.tasks.train:run",
]

setuptools.setup(
    name="oi_models",
    version="0.1.0",
    description=__doc__,
    packages=setuptools.find_packages(include=["oi_models", "oi_models.*"]),
    package_data={"oi_models.tools": ["data/*.tsv"]},
    python_requires=">=3.10,<3.13",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
