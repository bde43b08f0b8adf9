"""Log lines from the event loop leave once per loop turn, in order, and
nothing held is lost at a flush; elsewhere they leave at once."""

import asyncio
import io
import logging
import threading

from signaling.speedups.cpython_logging import LoopBatchedStreamHandler


class CountingStream(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


def logger_writing_to(stream) -> tuple[logging.Logger, LoopBatchedStreamHandler]:
    handler = LoopBatchedStreamHandler(stream, batching=True)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test_log_output.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, handler


async def test_lines_of_one_loop_turn_are_written_together_after_it():
    stream = CountingStream()
    logger, _ = logger_writing_to(stream)
    for n in range(3):
        logger.info("line %d", n)
    assert stream.getvalue() == ""
    await asyncio.sleep(0)
    assert stream.getvalue() == "INFO line 0\nINFO line 1\nINFO line 2\n"
    assert stream.writes == 1
    logger.info("next turn")
    await asyncio.sleep(0)
    assert stream.getvalue().endswith("INFO line 2\nINFO next turn\n")
    assert stream.writes == 2


async def test_a_flush_writes_what_is_held():
    stream = CountingStream()
    logger, handler = logger_writing_to(stream)
    logger.warning("held")
    handler.flush()
    assert stream.getvalue() == "WARNING held\n"
    await asyncio.sleep(0)
    assert stream.writes == 1


def test_without_a_running_loop_each_line_is_written_at_once():
    stream = CountingStream()
    logger, _ = logger_writing_to(stream)
    logger.info("plain")
    thread = threading.Thread(target=logger.info, args=("from a thread",))
    thread.start()
    thread.join()
    assert stream.getvalue() == "INFO plain\nINFO from a thread\n"


async def test_a_failing_stream_is_reported_not_raised_into_the_loop(capsys):
    class Broken(io.StringIO):
        def write(self, text):
            raise OSError("disk full")

    logger, _ = logger_writing_to(Broken())
    logger.info("lost")
    await asyncio.sleep(0)
    assert "disk full" in capsys.readouterr().err


def test_lines_held_by_a_loop_that_closed_are_written_by_the_next_loop():
    stream = CountingStream()
    logger, _ = logger_writing_to(stream)

    def log_and_stop():
        logger.info("before the close")
        first.stop()  # the loop ends before the turn that would write it

    first = asyncio.new_event_loop()
    first.call_soon(log_and_stop)
    first.run_forever()
    first.close()
    assert stream.getvalue() == ""

    async def log_again():
        logger.info("in the next loop")

    asyncio.run(log_again())
    assert stream.getvalue() == "INFO before the close\nINFO in the next loop\n"
