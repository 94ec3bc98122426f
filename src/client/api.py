"""The generator's control API over HTTP (standard library only, so the client installs light)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

#: The API's field names and the command-line flags that set them, for error messages.
FLAGS = {
    "num_keys": "--keys",
    "key_delay": "--delay",
    "key_ttl": "--ttl",
    "dedup_window": "--dedup-window",
}


class ApiError(Exception):
    """The generator could not be reached or refused a request; the message says what to do."""


@dataclass(frozen=True)
class Api:
    """Where the generator answers, and the bearer token for start and stop (if it needs one)."""

    url: str
    token: str | None = None
    timeout_s: float = 10.0

    def status(self) -> dict[str, Any]:
        """``GET /api/status``."""
        return self._request("GET", "/api/status")

    def start(self, config: dict[str, int]) -> dict[str, Any]:
        """``POST /api/start`` with ``config`` (the API's field names, milliseconds)."""
        return self._request("POST", "/api/start", config)

    def stop(self) -> dict[str, Any]:
        """``POST /api/stop``."""
        return self._request("POST", "/api/stop", {})

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        url = self.url.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            raise ApiError(self._explain(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(
                f"cannot reach the generator at {self.url} ({reason}): is it running "
                "(make up, docker compose up)? Pass its address with --url or EXPIRY_PIPELINE_URL"
            ) from None
        except json.JSONDecodeError:
            raise ApiError(
                f"{url} did not answer JSON: is --url the generator's address?"
            ) from None

    def _explain(self, exc: urllib.error.HTTPError) -> str:
        try:
            answer = json.loads(exc.read())
        except (json.JSONDecodeError, OSError):
            answer = {}
        message = str(answer.get("error") or exc.reason)
        if exc.code == 401:
            return (
                f"the generator refused the request ({message}): it needs its API_TOKEN; "
                "pass --token or set API_TOKEN"
            )
        if exc.code == 409:
            return f"{message}: wait for it to end, or stop it with 'expiry-pipeline stop'"
        field = answer.get("field")
        if exc.code == 400 and field in FLAGS:
            return f"{FLAGS[field]}: {message}"
        return f"the generator answered {exc.code}: {message}"
