"""A minimal Streamlit protocol client for tests: a websocket session that reruns the app and reads its deltas.

It speaks what the browser speaks (BackMsg / ForwardMsg protobufs on /_stcore/stream), so a test sees exactly
what a hostile non-browser client would: every element the server renders, and the widgets it could press.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import connect

_WIDGETS = ("button", "text_input", "checkbox", "toggle", "selectbox", "multiselect", "number_input", "radio",
            "text_area", "slider", "download_button")


@dataclass
class Render:
    """What one rerun sent: every ForwardMsg, its text, the widgets (kind, label, id) and the pages offered."""

    messages: list[ForwardMsg] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(str(m) for m in self.messages).replace("\\'", "'")  # text format escapes quotes

    def widgets(self) -> list[tuple[str, str, str]]:
        out = []
        for m in self.messages:
            if m.WhichOneof("type") != "delta" or m.delta.WhichOneof("type") != "new_element":
                continue
            element = m.delta.new_element
            kind = element.WhichOneof("type")
            if kind in _WIDGETS:
                proto = getattr(element, kind)
                out.append((kind, getattr(proto, "label", ""), proto.id))
        return out

    def widget_id(self, kind: str, label: str) -> str:
        found = [i for k, lbl, i in self.widgets() if k == kind and lbl == label]
        if not found:
            raise AssertionError(f"no {kind} {label!r}; widgets: {self.widgets()}")
        return found[0]

    def pages(self) -> dict[str, str]:
        """Page name → page_script_hash, from the navigation message (empty: no pages offered)."""
        out: dict[str, str] = {}
        for m in self.messages:
            if m.WhichOneof("type") == "navigation":
                out.update({p.page_name: p.page_script_hash for p in m.navigation.app_pages})
        return out


class Session:
    """One browser-like session on the UI at 127.0.0.1:``port``; ``host``/``origin`` set those headers."""

    def __init__(self, port: int, *, host: str | None = None, origin: str | None = None, timeout: float = 120) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        uri = f"ws://{host or f'127.0.0.1:{port}'}/_stcore/stream"
        self.timeout = timeout
        self.ws = connect(uri, sock=sock, subprotocols=["streamlit"], origin=origin,  # type: ignore[arg-type]
                          open_timeout=timeout, max_size=2**26)

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def rerun(self, page_hash: str = "", widgets: list[WidgetState] | None = None) -> Render:
        """Run the app (on ``page_hash``) with these widget states; everything sent until the run ends (a run
        that ends in st.rerun is followed into the next one)."""
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = page_hash
        for w in widgets or []:
            msg.rerun_script.widget_states.widgets.append(w)
        self.ws.send(msg.SerializeToString())
        render = Render()
        while True:
            data = self.ws.recv(timeout=self.timeout)
            fwd = ForwardMsg()
            fwd.ParseFromString(data if isinstance(data, bytes) else data.encode())
            render.messages.append(fwd)
            if fwd.WhichOneof("type") == "script_finished" and \
                    fwd.script_finished != ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN:
                return render


def trigger(widget_id: str) -> WidgetState:
    w = WidgetState(id=widget_id)
    w.trigger_value = True
    return w


def text_value(widget_id: str, value: str) -> WidgetState:
    w = WidgetState(id=widget_id)
    w.string_value = value
    return w


def bool_value(widget_id: str, value: bool) -> WidgetState:
    w = WidgetState(id=widget_id)
    w.bool_value = value
    return w
