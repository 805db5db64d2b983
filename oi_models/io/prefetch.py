"""A generator's items made on a thread of their own, ahead of their consumer, never left running.

A reader's time goes mostly to pyarrow's parse, which releases the GIL, and its consumer's to Python
(one step per image): made on another thread, the next segment is parsed while this one is walked,
and on two cores the two overlap.

The thread must not outlive its use. A thread still inside pyarrow's C++ code when the interpreter
finalizes aborts the process ("terminate called without an active exception"), so the thread is not
a daemon and stops on every path: when the consumer finishes, raises, or closes the generator early
(its `finally` stops the thread and joins it, which waits for the item in progress), and when the
consumer is gone without closing it (its thread ended; or the interpreter is exiting and the consumer
is a daemon thread, or the main thread, which `threading` marks stopped before it joins the others;
or the generator, in a reference cycle, is collected on the producer thread itself).
An error raised while making an item is raised in the consumer, in order.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

# How often a waiting side checks whether the other is still there.
_POLL_SECONDS = 0.05


def prefetched(make: Callable[[], Iterator[T]], depth: int = 1,
               name: str = "oi_models-prefetch") -> Iterator[T]:
  """Yields the items of `make()` in order, made on another thread up to `depth` items ahead.

  Args:
    make: called on the thread; returns the iterator of items (a generator is closed there when
      the consumer stops early, so its `finally` and `with` blocks run on the thread).
    depth: items kept ready beside the one being made.
    name: the thread's name.
  """
  ready: queue.Queue = queue.Queue(depth)
  stop = threading.Event()
  consumer = threading.current_thread()
  main = threading.main_thread()

  def consumer_gone() -> bool:
    return stop.is_set() or not consumer.is_alive() or (
        (consumer.daemon or consumer is main) and not main.is_alive())

  def put(item) -> bool:
    while not consumer_gone():
      try:
        ready.put(item, timeout=_POLL_SECONDS)
        return True
      except queue.Full:
        pass
    return False

  def produce() -> None:
    items = None
    try:
      items = make()
      for item in items:
        if not put((True, item)):
          return
      put((False, None))
    except BaseException as e:  # pylint: disable=broad-except  (raised in the consumer)
      put((False, e))
    finally:
      close = getattr(items, "close", None)  # A generator left suspended closes here.
      if close is not None:
        close()

  thread = threading.Thread(target=produce, name=name, daemon=False)
  thread.start()
  try:
    while True:
      try:
        more, item = ready.get(timeout=_POLL_SECONDS)
      except queue.Empty:
        if not thread.is_alive() and ready.empty():
          raise RuntimeError(f"{name}: the thread ended without its items") from None
        continue
      if not more:
        if item is not None:
          raise item
        return
      yield item
  finally:
    stop.set()
    # Dropped without a close, this generator is finalized by whichever thread's garbage
    # collection finds it, the producer's own included; that one stops on the flag by itself.
    if threading.current_thread() is not thread:
      thread.join()
