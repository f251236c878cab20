"""Frontend settings: the only place in frontend/ that reads the environment (TRUSTLAB_* variables)."""
from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """UI configuration. Every field can be set as ``TRUSTLAB_<FIELD>`` (e.g. ``TRUSTLAB_API_URL``)."""

    model_config = SettingsConfigDict(env_prefix="TRUSTLAB_", extra="ignore")

    api_url: str = Field(default="http://127.0.0.1:8000", description="base URL of the trustlab API")
    # No token of its own: each browser session signs in with its user's token (frontend/signin.py), which the
    # session's API client forwards. A TRUSTLAB_API_TOKEN in the UI's environment is ignored.
    ui_allowed_hosts: str = Field(default="localhost,127.0.0.1,::1", max_length=4096,
                                  description="Host header names the UI answers (python -m frontend.serve), "
                                              "comma-separated; * accepts any. Websocket upgrades from another "
                                              "origin are refused too")
    request_timeout: float = Field(default=10.0, gt=0, description="seconds before an API call gives up")
    refresh_seconds: float = Field(default=1.5, ge=0.5, le=60, description="live chart refresh interval")
    max_points: int = Field(default=2000, ge=10, le=100_000,
                            description="points per run asked of the API per fetch (downsampled); each run's "
                                        "cached history holds at most twice this many")
    plot_points: int = Field(default=1200, ge=10, le=100_000,
                             description="points per curve drawn (min/max-preserving downsampling)")


    @property
    def ui_host_names(self) -> set[str]:
        """Allowed Host names, lower case, without brackets or port."""
        return {h.strip().strip("[]").lower() for h in self.ui_allowed_hosts.split(",") if h.strip()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
