"""Request bodies shaped like Codex CLI 0.169's (`POST /v1/responses`, custom provider with
wire_api = "responses"), as captured on 127.0.0.1; long texts trimmed, ids fake."""
from __future__ import annotations

import copy

_SESSION = "01a23480-3674-7cf1-92d2-d4aa3458a0d0"
_NO_ARGS = {"type": "object", "properties": {}, "additionalProperties": False}

_TURN_ONE = {
    "model": "claude-sonnet-4-5", "stream": True,
    "input": [
        {"type": "message", "id": "msg_c5e2", "role": "developer", "content": [
            {"type": "input_text", "text": "You are a coding agent running in the Codex CLI, a terminal-based "
                                           "coding assistant. Be concise."}]},
        {"type": "message", "id": "msg_01a2a", "role": "developer", "content": [
            {"type": "input_text", "text": "<skills_instructions>\n## Skills\nNone.\n</skills_instructions>"},
            {"type": "input_text", "text": "<permissions instructions>\nFilesystem sandboxing defines which "
                                           "files can be read or written. `sandbox_mode` is `read-only`. "
                                           "Approval policy is currently never.\n</permissions instructions>"}]},
        {"type": "message", "id": "msg_01a2b", "role": "user", "content": [
            {"type": "input_text", "text": "<environment_context>\n  <cwd>/home/me/work</cwd>\n  <shell>bash</shell>\n"
                                           "  <current_date>2026-12-02</current_date>\n  <timezone>Etc/UTC</timezone>\n"
                                           "</environment_context>"}]},
        {"type": "message", "id": "msg_01a2c", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]},
    ],
    "tools": [
        {"type": "function", "name": "exec_command", "strict": False,
         "description": "Runs a command in a PTY, returning output or a session ID for ongoing interaction.",
         "parameters": {"type": "object", "properties": {
             "cmd": {"type": "string", "description": "Shell command to execute."},
             "justification": {"type": "string"}, "login": {"type": "boolean"},
             "max_output_tokens": {"type": "number"}, "prefix_rule": {"type": "array", "items": {"type": "string"}},
             "sandbox_permissions": {"type": "string", "enum": ["use_default", "require_escalated"]},
             "shell": {"type": "string"}, "tty": {"type": "boolean"}, "workdir": {"type": "string"},
             "yield_time_ms": {"type": "number"}}, "required": ["cmd"], "additionalProperties": False}},
        {"type": "function", "name": "write_stdin", "strict": False, "description": "Write to a session.",
         "parameters": {"type": "object", "properties": {"session_id": {"type": "number"}, "chars": {"type": "string"}},
                        "required": ["session_id"], "additionalProperties": False}},
        {"type": "function", "name": "view_image", "strict": False, "description": "View an image.",
         "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"],
                        "additionalProperties": False}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Tools for spawning and managing sub-agents.",
         "tools": [{"type": "function", "name": n, "strict": False, "description": n, "parameters": _NO_ARGS}
                   for n in ("close_agent", "resume_agent", "send_input", "spawn_agent", "wait_agent")]},
        {"type": "function", "name": "get_goal", "strict": False, "description": "Get the goal.", "parameters": _NO_ARGS},
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto", "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"}, "store": False, "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": _SESSION,
    "client_metadata": {"x-codex-installation-id": "382a", "session_id": _SESSION, "thread_id": _SESSION,
                        "turn_id": _SESSION, "x-codex-window-id": _SESSION + ":0"},
}

CODEX_FOLLOW_UP_ITEMS = [
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "**Planning** I will run echo."}],
     "content": None, "encrypted_content": "OPAQUE-THINKING-BLOB-123"},
    {"type": "message", "status": "completed", "id": "msg_pre", "role": "assistant",
     "content": [{"type": "output_text", "text": "Let me run it.", "annotations": []}]},
    {"type": "function_call", "status": "completed", "id": "fc_1", "name": "exec_command",
     "arguments": "{\"cmd\": \"echo hi\"}", "call_id": "call_abc123"},
    {"type": "function_call_output", "id": "fco_01a2", "call_id": "call_abc123",
     "output": "Chunk ID: 51f879\nWall time: 0.0000 seconds\nProcess exited with code 0\nOriginal token count: 1\n"
               "Output:\nhi\n"},
]
"""What Codex appends to the turn-1 input for its follow-up request after one function call."""


def codex_turn_one() -> dict:
    """A fresh copy of Codex's turn-1 body."""
    return copy.deepcopy(_TURN_ONE)
