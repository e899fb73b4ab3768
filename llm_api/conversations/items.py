"""Items in and out: whatever shape a client sends, items are stored and returned in the OpenAI
Conversations API's shapes.

Accepted on input besides OpenAI's own shapes (see ``ContentPartInput`` in openapi.yaml): Jan's
``{"type": "input_text", "input_text": ...}``, nested ``{"type": "text", "text": {"text": ...}}``,
``{"type": "output_text", "output_text": {...}}`` and ``{"type": "image", "image": {...}}``, plain
``text`` parts, and a plain string as a message's content. Text becomes ``input_text`` in user,
system and developer messages and ``output_text`` (with ``annotations`` and ``logprobs``, ``[]`` unless
given) in assistant messages.
"""

from __future__ import annotations

from typing import Any

from pydantic import MISSING, BaseModel

from llm_api.ids import new_id
from llm_api.schemas import models
from llm_api.schemas.values import given, unix

InputItem = models.MessageItemInput | models.FunctionCallItemInput | models.FunctionCallOutputItemInput


def stored(item: InputItem) -> dict[str, Any]:
    """The row to store for an input item: id, type, role, status and the type's body."""
    common = {"id": given(item.id) or new_id("msg"), "status": given(item.status) or "completed"}
    if isinstance(item, models.MessageItemInput):
        content = item.content.root
        parts = [_text(item.role, content, [])] if isinstance(content, str) else [_part(item.role, part) for part in content]
        return {**common, "type": "message", "role": item.role, "body": {"content": parts}}
    if isinstance(item, models.FunctionCallItemInput):
        return {
            **common,
            "type": "function_call",
            "role": None,
            "body": {"call_id": item.call_id, "name": item.name, "arguments": item.arguments},
        }
    return {**common, "type": "function_call_output", "role": None, "body": {"call_id": item.call_id, "output": item.output}}


def rendered(row: dict[str, Any]) -> BaseModel:
    """A stored item as the API returns it."""
    common = {"id": row["id"], "status": row["status"], "created_at": unix(row["created_at"])}
    if row["type"] == "message":
        content = [_shown(part) for part in row["body"]["content"]]
        return models.MessageItem.model_validate({**common, "type": "message", "role": row["role"], "content": content})
    if row["type"] == "function_call":
        return models.FunctionCallItem.model_validate({**common, "type": "function_call", **row["body"]})
    return models.FunctionCallOutputItem.model_validate({**common, "type": "function_call_output", **row["body"]})


def _shown(part: dict[str, Any]) -> dict[str, Any]:
    """A stored content part as OpenAI's schemas want it. Rows stored before ``output_text`` parts had
    ``logprobs`` (which OpenAI requires) get ``[]``; an ``input_file``'s null ``file_url``, ``file_data``
    and ``filename`` (which OpenAI does not allow to be null, and which were stored so) are left out."""
    if part["type"] == "output_text" and "logprobs" not in part:
        return {**part, "logprobs": []}
    if part["type"] == "input_file":
        return {name: value for name, value in part.items() if value is not None}
    return part


def _part(role: str, part: BaseModel) -> dict[str, Any]:
    match part:
        case models.InputTextPartInput(text=text) | models.JanInputTextPartInput(input_text=text):
            return {"type": "input_text", "text": text}
        case models.OutputTextPartInput(text=text, annotations=annotations, logprobs=logprobs):
            return _output_text(text, annotations, logprobs)
        case models.JanOutputTextPartInput(output_text=value) | models.JanNestedTextPartInput(type="output_text", text=value):
            return _output_text(value.text, value.annotations)
        case models.JanNestedTextPartInput(text=value):
            return _text(role, value.text, value.annotations)
        case models.TextPartInput(text=text):
            return _text(role, text, MISSING)
        case models.InputImagePartInput():
            return _image(part.image_url, part.file_id, part.detail)
        case models.JanImagePartInput(image=image):
            return _image(image.url, image.file_id, image.detail)
        case models.InputFilePartInput():
            fields = {name: given(getattr(part, name)) for name in ("file_id", "file_url", "file_data", "filename")}
            return {"type": "input_file", **{name: value for name, value in fields.items() if value is not None}}
        case models.RefusalPartInput(refusal=refusal):
            return {"type": "refusal", "refusal": refusal}
        case models.ReasoningTextPartInput(text=text):
            return {"type": "reasoning_text", "text": text}
    raise TypeError(f"unexpected content part {type(part).__name__}")  # the input models admit no other


def _text(role: str, text: str, annotations) -> dict[str, Any]:
    return _output_text(text, annotations) if role == "assistant" else {"type": "input_text", "text": text}


def _output_text(text: str, annotations, logprobs=MISSING) -> dict[str, Any]:
    """An ``output_text`` part with the ``annotations`` and ``logprobs`` OpenAI requires (``[]`` when not sent)."""
    notes = [note.model_dump(mode="json") for note in given(annotations) or []]
    probabilities = [logprob.model_dump(mode="json") for logprob in given(logprobs) or []]
    return {"type": "output_text", "text": text, "annotations": notes, "logprobs": probabilities}


def _image(url, file_id, detail) -> dict[str, Any]:
    return {"type": "input_image", "image_url": given(url), "file_id": given(file_id), "detail": given(detail) or "auto"}
