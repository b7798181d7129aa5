"""Every script in examples/ runs as a user runs it: a subprocess, in an empty directory,
against FakeLlmServer (its own built-in one, or ours through COWORK_LLM_* variables)."""

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cowork_llm.testing import FakeLlmServer, tool_call

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NO_CONFIG_LINE = ("no LLM configured — demo against the built-in fake server; "
                  "set COWORK_LLM_* or write config.toml to use a real one")
# Run elsewhere: it needs the "local" extra (llama.cpp's server and a 250 MB model).
RUN_ELSEWHERE = {"local_model.py": "tests/realserver/test_local_model_example.py",
                 "shared_quota.py": "tests/rate_limiter/backends/test_shared_quota_processes.py",
                 "telemetry.py": "tests/telemetry/test_example.py"}
RUN_HERE = {"quickstart.py", "threaded_pipeline.py", "testing_with_mock.py", "tool_agent.py"}

QUICKSTART_PROMPTS = 4
CALL_LINE = re.compile(r"^call (\d)  (started|answered) \+(\d+\.\d) s  '([^']+)' -> '([^']*)'"
                       r"  \((\d+) prompt \+ (\d+) completion tokens\)$")


def clean_env(**extra):
    """This process's environment without any COWORK_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    env.update(extra)
    return env


def run_example(name, *args, env=None, cwd, timeout=60):
    """Run examples/NAME with no COWORK_* variable but those in ``env``."""
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd,
                          env=clean_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def quickstart_demo(tmp_path_factory):
    """The quickstart with nothing configured, started before the first test of this file:
    its demo waits on the real 2 s interval (about 6 s), so the other tests run meanwhile.
    Its test comes last."""
    process = subprocess.Popen([sys.executable, str(EXAMPLES / "quickstart.py")],
                               cwd=tmp_path_factory.mktemp("quickstart"), env=clean_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield process
    if process.poll() is None:  # its test did not run (deselected) or failed early
        process.kill()
    process.communicate()


def call_lines(stdout):
    return [m.groups() for m in map(CALL_LINE.match, stdout.splitlines()) if m]


def test_every_example_has_a_test():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts - set(RUN_ELSEWHERE) == RUN_HERE


# --- quickstart ------------------------------------------------------------------------------


def test_quickstart_talks_to_the_llm_configured_in_the_environment(tmp_path):
    with FakeLlmServer(api_key="sk-quickstart-test-key-0000") as server:
        done = run_example("quickstart.py", cwd=tmp_path,
                           env=server.env(min_interval_seconds=0.2))
        arrived = server.chat_requests
        gaps = server.arrival_gaps(path=server.CHAT_PATH)
    assert done.returncode == 0, done.stderr
    assert NO_CONFIG_LINE not in done.stdout
    assert len(arrived) == QUICKSTART_PROMPTS
    assert all(r.api_key == "sk-quickstart-test-key-0000" for r in arrived)
    assert all(gap >= 0.19 for gap in gaps), gaps  # the configured interval, not the demo's
    calls = call_lines(done.stdout)
    assert sorted(prompt for *_, prompt, _, _, _ in calls) == sorted(
        r.messages[-1]["content"] for r in arrived)
    assert all(when == "started" for _, when, *_ in calls)  # ChatResult.started_at
    starts = sorted(float(start) for _, _, start, *_ in calls)
    assert starts[-1] - starts[0] >= 0.5  # 3 gaps of at least 0.2 s, printed to 0.1 s
    assert "started them at least 0.2 s apart" in done.stdout.splitlines()[-1]


def test_quickstart_reads_config_toml_in_the_current_directory(tmp_path):
    with FakeLlmServer() as server:
        config = tmp_path / "config.toml"
        config.write_text(f'[llm.model]\nbase_url = "{server.base_url}"\napi_key = "k"\n'
                          f'model_name = "from-config-toml"\n[llm.rate_limit]\n'
                          f'min_interval_seconds = 0.05\n')
        config.chmod(0o600)
        done = run_example("quickstart.py", cwd=tmp_path)
        models = {r.model for r in server.chat_requests}
    assert done.returncode == 0, done.stderr
    assert models == {"from-config-toml"}
    assert len(call_lines(done.stdout)) == QUICKSTART_PROMPTS


def test_quickstart_configuration_error_is_one_line_and_exit_2(tmp_path):
    done = run_example("quickstart.py", cwd=tmp_path, env={
        "COWORK_LLM_BASE_URL": "ftp://example.com", "COWORK_LLM_API_KEY": "k",
        "COWORK_LLM_MODEL_NAME": "m"})
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("configuration error: ") and "COWORK_LLM_BASE_URL" in done.stderr


# --- threaded_pipeline -------------------------------------------------------------------------


def pipeline_blocks(stdout):
    """{topic: [stage lines]} from the pipeline's report."""
    blocks, topic = {}, None
    for line in stdout.splitlines():
        if line.startswith("  ") and topic is not None:
            blocks[topic].append(line.strip())
        elif line in ("tide pools", "paper maps", "sourdough"):
            topic = line
            blocks[topic] = []
    return blocks


def test_threaded_pipeline_with_nothing_configured_runs_every_stage(tmp_path):
    done = run_example("threaded_pipeline.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == NO_CONFIG_LINE
    blocks = pipeline_blocks(done.stdout)
    assert set(blocks) == {"tide pools", "paper maps", "sourdough"}
    for topic, stages in blocks.items():
        assert [s.split(":")[0] for s in stages] == ["outline", "draft", "review"]
        assert topic in stages[0]
    assert done.stdout.splitlines()[-1].startswith("9 calls in ")


def test_threaded_pipeline_feeds_each_stage_the_previous_answer(tmp_path):
    with FakeLlmServer() as server:
        done = run_example("threaded_pipeline.py", cwd=tmp_path,
                           env=server.env(min_interval_seconds=0.05, max_concurrent=2))
        prompts = [r.messages[-1]["content"] for r in server.chat_requests]
    assert done.returncode == 0, done.stderr
    assert len(prompts) == 9
    for topic in ("tide pools", "paper maps", "sourdough"):
        outline = f"Outline a short note about {topic} in three bullet points."
        draft = f"Write a one-paragraph note from this outline:\necho: {outline}"
        review = f"Review this note in one sentence:\necho: {draft}"
        assert {outline, draft, review} <= set(prompts)


def test_threaded_pipeline_reports_a_failed_job_and_finishes_the_others(tmp_path):
    with FakeLlmServer() as server:
        server.fail_next(status=400)  # not retried: the first outline fails for good
        done = run_example("threaded_pipeline.py", cwd=tmp_path, env=server.env())
        sent = len(server.chat_requests)
    assert done.returncode == 1
    assert sent == 1 + 2 * 3  # the failed job skips its later stages
    failed = [topic for topic, stages in pipeline_blocks(done.stdout).items()
              if any(s.startswith("outline failed: ") for s in stages)]
    assert len(failed) == 1
    assert done.stdout.splitlines()[-1].startswith("6 calls in ")


# --- testing_with_mock -------------------------------------------------------------------------


def test_testing_with_mock_runs_as_a_script(tmp_path):
    done = run_example("testing_with_mock.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "4 of 4 passed"
    assert done.stdout.count("\nok   test_") + done.stdout.startswith("ok   test_") == 4


def test_testing_with_mock_runs_under_pytest(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(EXAMPLES / "testing_with_mock.py")],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b4 passed\b", done.stdout), done.stdout


# --- last: the quickstart's default demo, started by the quickstart_demo fixture -----------


@pytest.mark.slow  # the real default interval: 3 gaps of 2 s
def test_quickstart_with_nothing_configured_demos_the_limiter_on_the_fake_server(quickstart_demo):
    stdout, stderr = quickstart_demo.communicate(timeout=60)
    assert quickstart_demo.returncode == 0, stderr
    assert stderr == ""
    lines = stdout.splitlines()
    assert lines[0] == NO_CONFIG_LINE
    assert "requests start at least 2 s apart" in lines[1]
    calls = call_lines(stdout)
    assert len(calls) == QUICKSTART_PROMPTS
    for _, when, _, prompt, answer, prompt_tokens, completion_tokens in calls:
        assert when == "started"
        assert answer == f"echo: {prompt}"
        assert int(prompt_tokens) > 0 and int(completion_tokens) > 0
    assert len({prompt for *_, prompt, _, _, _ in calls}) == QUICKSTART_PROMPTS
    starts = sorted(float(start) for _, _, start, *_ in calls)
    assert starts[0] < 1.0  # the first call does not wait
    # As printed (to 0.1 s, hence the margin): the server saw the starts 2 s apart.
    assert all(later - earlier >= 1.85 for earlier, later in itertools.pairwise(starts)), starts
    assert lines[-1].startswith(f"{QUICKSTART_PROMPTS} calls, starts ")
    assert "the shared limiter spaced them 2 s apart" in lines[-1]


# --- tool_agent --------------------------------------------------------------------------------


def test_tool_agent_runs_offline_to_its_answer_in_three_steps(tmp_path):
    done = run_example("tool_agent.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == NO_CONFIG_LINE
    assert lines[1].startswith('step 1: get_weather({"city": "Oslo"}) -> ok: {"city": "Oslo", '
                               '"temperature": 12')
    assert lines[2].startswith("step 2: save_note(")
    assert lines[2].endswith("-> ok: saved note 'Walk in Oslo'")
    assert lines[3] == ("answer after 3 model steps: It is 12 degrees with light rain in Oslo; "
                        "I saved a note to take a raincoat.")
    assert lines[4] == 'notes: {"Walk in Oslo": "12 degrees and light rain: take a raincoat."}'
    assert lines[5].startswith("usage: 3 requests (0 cached, 0 failed, 0 retries)")


def test_tool_agent_sends_the_tools_and_results_to_the_configured_llm(tmp_path):
    def model(messages):
        if any(m.get("role") == "tool" for m in messages):
            return "Done."
        return tool_call("get_weather", city="Bergen", unit="fahrenheit")

    with FakeLlmServer(reply=model) as server:
        done = run_example("tool_agent.py", "Weather in Bergen?", cwd=tmp_path, env=server.env())
        requests = server.chat_requests
    assert done.returncode == 0, done.stderr
    assert [t["function"]["name"] for t in requests[0].body["tools"]] == ["get_weather", "save_note"]
    unit = requests[0].body["tools"][0]["function"]["parameters"]["properties"]["unit"]
    assert unit["enum"] == ["celsius", "fahrenheit"]
    assert requests[1].messages[-1]["role"] == "tool"
    assert '"unit": "fahrenheit"' in requests[1].messages[-1]["content"]
    assert "answer after 2 model steps: Done." in done.stdout
