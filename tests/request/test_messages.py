"""The message vocabulary: what validate_messages accepts, what it returns, and errors
that name the message and the field."""

import base64

import pytest

from cowork_llm.request import build_messages, validate_messages
from cowork_llm.request._messages import image_parts, message_text

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake image bytes").decode()


def test_every_role_and_content_form_is_accepted_and_copied():
    parts = [{"type": "text", "text": "What is in this image?"},
             {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    messages = [
        {"role": "system", "content": "Be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English"}]},
        {"role": "user", "content": parts, "name": "alice"},
        {"role": "assistant", "content": "A cat.", "name": "bot", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "count", "arguments": "{}"}}]},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    ]
    checked = validate_messages(messages)
    assert checked == messages
    assert checked[2]["name"] == "alice"  # kept, not dropped
    assert checked[2]["content"] is not parts and checked[2]["content"][1] is not parts[1]  # fresh copies
    parts[0]["text"] = "changed later"
    assert checked[2]["content"][0]["text"] == "What is in this image?"


@pytest.mark.parametrize("messages, fragment", [
    ([{"role": "robot", "content": "x"}], r"messages\[0\]\['role'\] must be one of system, developer"),
    ([{"role": "user", "content": "x", "nmae": "a"}], r"messages\[0\] has 'nmae'"),
    ([{"role": "user", "content": "x"}, {"role": "user", "content": []}],
     r"messages\[1\]\['content'\] must not be an empty list"),
    ([{"role": "user", "content": [{"type": "text", "text": " "}]}],
     r"messages\[0\]\['content'\]\[0\]\['text'\] must be a non-empty string"),
    ([{"role": "user", "content": [{"type": "audio", "data": "x"}]}],
     r"messages\[0\]\['content'\]\[0\]\['type'\] must be 'text' or 'image_url'"),
    ([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}],
     r"image in a 'system' message: images go in user messages"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}],
     r"\['image_url'\]\['url'\] must be an http\(s\) URL or a data:image"),
    ([{"role": "user", "content": [{"type": "image_url",
                                    "image_url": {"url": "data:image/bmp;base64,AAAA"}}]}],
     r"data:image/png;base64,<data> with one of image/jpeg"),
    ([{"role": "user", "content": [{"type": "image_url",
                                    "image_url": {"url": "data:image/png;base64,@@@"}}]}],
     r"holds data that is not base64"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG, "detail": "max"}}]}],
     r"\['detail'\] must be one of auto, low, high"),
    ([{"role": "user", "content": "x", "name": ""}], r"messages\[0\]\['name'\] must be a non-empty string"),
    ([{"role": "tool", "content": "42"}], r"messages\[0\] \(role 'tool'\) needs 'tool_call_id'"),
    ([{"role": "user", "content": 5}], r"must be a string or a list of parts, got int"),
    ("hello", r"messages must be a list"),
    ([], r"messages must not be empty"),
])
def test_bad_messages_name_the_index_and_field(messages, fragment):
    with pytest.raises(ValueError, match=fragment):
        validate_messages(messages)


def test_text_and_images_of_a_message():
    message = validate_messages([{"role": "user", "content": [
        {"type": "text", "text": "one"}, {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "text", "text": "two"}]}])[0]
    assert message_text(message) == "one\n\ntwo"
    assert list(image_parts(message)) == [{"url": PNG}]
    assert message_text({"role": "user", "content": "plain"}) == "plain"


def test_build_messages_is_unchanged():
    assert build_messages("hi", "be brief") == [{"role": "system", "content": "be brief"},
                                                {"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        build_messages("  ")


def assistant_calls(*calls):
    return [{"role": "user", "content": "Weather in Zürich?"},
            {"role": "assistant", "content": None, "tool_calls": list(calls)}]


def test_tool_calls_are_sent_in_openais_form_with_arguments_as_json_text():
    checked = validate_messages(assistant_calls(
        {"id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Zürich"}}},
        {"id": "c2", "type": "function", "function": {"name": "ping"}}))
    assert checked[1]["tool_calls"] == [
        {"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'}},
        {"id": "c2", "type": "function", "function": {"name": "ping", "arguments": "{}"}}]


@pytest.mark.parametrize("calls, message", [
    ([], "messages[1]['tool_calls'] must be a non-empty list of "
         "{'id': ..., 'type': 'function', 'function': {'name': ..., 'arguments': ...}}"),
    ([{"id": "c1", "type": "retrieval", "function": {"name": "f", "arguments": "{}"}}],
     "messages[1]['tool_calls'][0] must be {'type': 'function', "
     "'function': {'name': ..., 'arguments': ...}}"),
    ([{"id": "c1", "function": {"name": "f", "arguments": 5}}],
     "messages[1]['tool_calls'][0]['function']['arguments'] must be JSON text or a dict, got int"),
    ("call_1", "messages[1]['tool_calls'] must be a non-empty list of "
               "{'id': ..., 'type': 'function', 'function': {'name': ..., 'arguments': ...}}"),
    (5, "messages[1]['tool_calls'] must be a non-empty list of "
        "{'id': ..., 'type': 'function', 'function': {'name': ..., 'arguments': ...}}"),
    (["call_1"], "messages[1]['tool_calls'][0] must be a dict, got str"),
    ([{"function": {"name": "f"}}],
     "messages[1]['tool_calls'][0]['id'] must be a non-empty string (the id the tool result answers)"),
    ([{"id": " ", "function": {"name": "f"}}],
     "messages[1]['tool_calls'][0]['id'] must be a non-empty string (the id the tool result answers)"),
    ([{"id": "c1", "function": {"name": "get weather"}}],
     "messages[1]['tool_calls'][0]['function']['name'] must be a tool name, got 'get weather'"),
    ([{"id": "c1", "function": {}}],
     "messages[1]['tool_calls'][0]['function']['name'] must be a tool name, got None"),
])
def test_a_bad_tool_call_is_refused_with_the_shape_it_must_have(calls, message):
    messages = assistant_calls()
    messages[1]["tool_calls"] = calls
    with pytest.raises(ValueError) as raised:
        validate_messages(messages)
    assert str(raised.value) == message


def test_a_tool_result_that_answers_no_earlier_call_says_what_must_come_first():
    messages = assistant_calls({"id": "c1", "function": {"name": "f", "arguments": "{}"}})
    messages.append({"role": "tool", "tool_call_id": "c2", "content": "x"})
    with pytest.raises(ValueError) as raised:
        validate_messages(messages)
    assert str(raised.value) == ("messages[2] answers tool call 'c2', which no earlier assistant message "
                                 "made (its 'tool_calls' must come first, with that id)")
