"""A three-stage synchronous pipeline: outline -> draft -> review.

    python examples/threaded_pipeline.py

Each stage is a few worker threads reading jobs from a queue.Queue and handing them on
to the next stage's queue. Every worker of every stage shares ONE client, so the whole
pipeline stays inside one rate limit however many threads it runs.

With nothing configured (no ./config.toml, no COWORK_LLM_* variable, no COWORK_CONFIG)
it runs against the built-in FakeLlmServer, which echoes each prompt, with 0.2 s between
request starts instead of the default 2 s so the demo is quick.
"""

import logging
import os
import queue
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional

from cowork_llm import ConfigError, Llm, LlmError, create_llm_client, load_config
from cowork_llm.testing import FakeLlmServer

TOPICS = ["tide pools", "paper maps", "sourdough"]
STAGES = [  # (name, prompt template filled with the previous stage's text, worker threads)
    ("outline", "Outline a short note about {} in three bullet points.", 2),
    ("draft", "Write a one-paragraph note from this outline:\n{}", 2),
    ("review", "Review this note in one sentence:\n{}", 1),
]


@dataclass
class Job:
    topic: str
    texts: List[str] = field(default_factory=list)  # one per stage done, in order
    error: Optional[LlmError] = None  # set by the stage that failed; later stages skip it


STOP = None  # put on a stage's queue once per worker, after the last job
JobQueue = queue.Queue[Optional[Job]]


def nothing_configured() -> bool:
    """True when there is no config file and no COWORK_* variable to read."""
    return not (os.path.exists("config.toml") or os.environ.get("COWORK_CONFIG")
                or any(name.startswith("COWORK_LLM_") for name in os.environ))


def stage_worker(llm: Llm, template: str, inbox: JobQueue, outbox: JobQueue) -> None:
    """Run the stage's prompt for every job of ``inbox`` until STOP; hand each job on."""
    while (job := inbox.get()) is not STOP:
        if job.error is None:
            previous = job.texts[-1] if job.texts else job.topic
            try:
                job.texts.append(llm.generate_content(template.format(previous)))
            except LlmError as error:
                job.error = error
        outbox.put(job)


def run_pipeline(llm: Llm, topics: List[str]) -> List[Job]:
    """Push ``topics`` through every stage at once; return the finished jobs."""
    queues: List[JobQueue] = [queue.Queue() for _ in range(len(STAGES) + 1)]
    stages = [[threading.Thread(target=stage_worker, name=f"{name}-{n}", daemon=True,
                                args=(llm, template, queues[i], queues[i + 1]))
               for n in range(workers)]
              for i, (name, template, workers) in enumerate(STAGES)]
    for threads in stages:
        for thread in threads:
            thread.start()
    for topic in topics:
        queues[0].put(Job(topic))
    # Stop the stages in order: once all of a stage's workers have stopped, every job
    # they handled is already in the next queue, ahead of that queue's STOP markers.
    for inbox, threads in zip(queues, stages, strict=False):  # the last queue has no stage
        for _ in threads:
            inbox.put(STOP)
        for thread in threads:
            thread.join()
    done = queues[-1]
    return [job for job in (done.get() for _ in range(done.qsize())) if job is not STOP]


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    server: Optional[FakeLlmServer] = None
    try:
        if nothing_configured():
            print("no LLM configured — demo against the built-in fake server; "
                  "set COWORK_LLM_* or write config.toml to use a real one")
            server = FakeLlmServer().start()
            config = server.config(min_interval_seconds=0.2)
        else:
            config = load_config()  # ./config.toml, else $COWORK_CONFIG, then COWORK_LLM_*
        llm = create_llm_client(config)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2

    workers = sum(count for _, _, count in STAGES)
    print(f"{len(TOPICS)} topics through {len(STAGES)} stages: {workers} worker threads share "
          f"one client for {config.model.model_name}, requests start "
          f"{config.rate_limit.min_interval_seconds:g} s apart")
    started = time.monotonic()
    with llm:
        jobs = run_pipeline(llm, TOPICS)
    if server is not None:
        server.stop()

    for job in sorted(jobs, key=lambda j: TOPICS.index(j.topic)):
        print(job.topic)
        for (stage, _, _), text in zip(STAGES, job.texts, strict=False):
            print(f"  {stage + ':':<9}{textwrap.shorten(text, 110, placeholder=' ...')}")
        if job.error is not None:
            print(f"  {STAGES[len(job.texts)][0]} failed: {job.error}")
    calls = sum(len(job.texts) for job in jobs)
    print(f"{calls} calls in {time.monotonic() - started:.1f} s, the stages working side by side")
    return 1 if any(job.error for job in jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
