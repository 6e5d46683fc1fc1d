"""Settings: the only module that reads the environment (and `.env`).

Names users of the Scicom streaming TTS API already use are kept (`TTS_API`,
`MODEL_NAME`, `SPEAKERS`, `DEFAULT_*`, `DYNAMIC_BATCHING`, `MICROSLEEP`,
`MAX_BATCH_SIZE`, `SENTRY_DSN`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ORPHEUS_VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")

# OpenAI's voice names, mapped onto the Orpheus fine-tuned voices by rough timbre.
DEFAULT_VOICE_ALIASES: dict[str, str] = {
    "alloy": "tara",
    "ash": "dan",
    "ballad": "leo",
    "coral": "leah",
    "echo": "zac",
    "fable": "jess",
    "onyx": "leo",
    "nova": "mia",
    "sage": "zoe",
    "shimmer": "jess",
    "verse": "dan",
    "marin": "tara",
    "cedar": "zac",
}


def _split_list(value: object) -> object:
    """Accept `a,b,c` as well as a JSON list for list-valued variables."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- server ---
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    workers: int = Field(default=1, ge=1, le=64)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="Largest request head (line + headers): 431"
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a request head may take to arrive: 408"
    )
    client_stall_timeout: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a streamed response may wait for the client to take any bytes "
        "before it is ended and its slot freed; 0 disables",
    )
    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        description="prometheus-client's multiprocess directory; set by `python -m app` "
        "when WORKERS > 1.",
    )

    # --- token backend ---
    tts_api: str | None = Field(
        default=None,
        description="Base URL(s) of OpenAI-compatible completions servers, comma separated.",
    )
    tts_api_key: str | None = None
    model_name: str = "orpheus"
    backend_connect_timeout: float = Field(default=5.0, gt=0)
    first_token_timeout: float = Field(default=30.0, gt=0)
    inter_token_timeout: float = Field(default=10.0, gt=0)
    backend_failure_threshold: int = Field(default=3, ge=1)
    backend_backoff_seconds: float = Field(default=1.0, gt=0)
    backend_max_backoff_seconds: float = Field(default=30.0, gt=0)
    invalid_token_policy: Literal["resync", "fail"] = "resync"
    max_invalid_tokens: int = Field(default=70, ge=0)

    # --- in-process engine / demo ---
    tts_model: str = "canopylabs/orpheus-3b-0.1-ft"
    tts_demo: bool = False
    cache_dir: Path = Path(".cache")
    engine_max_streams: int = Field(default=4, ge=1)

    # --- voices and sampling defaults ---
    default_speaker: str = "tara"
    speakers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(ORPHEUS_VOICES))
    voice_aliases: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_VOICE_ALIASES)
    )
    default_temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    default_top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    default_repetition_penalty: float = Field(default=1.1, ge=1.0, le=2.0)
    default_max_tokens: int = Field(default=2048, ge=7)
    max_model_len: int = Field(default=4096, ge=64)
    max_input_chars: int = Field(default=4096, ge=1)
    max_instructions_chars: int = Field(default=4096, ge=0)

    # --- text front-end (app/text, docs/text.md) ---
    normalize_text: bool = True
    # About 12-14 s of speech at 14-16 characters per second: inside one generation's
    # 2048-token budget even for slow speech (docs/text.md).
    segment_max_chars: int = Field(default=200, ge=20, le=4096)
    segment_first_max_chars: int = Field(default=100, ge=10, le=4096)

    # --- codec ---
    snac_model: str = "hubertsiuzdak/snac_24khz"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    snac_noise: bool = True
    decode_context_frames: int = Field(default=3, ge=0, le=8)
    chunk_schedule: Literal["buffer", "doubling"] = "buffer"
    chunk_first_frames: int = Field(default=2, ge=1, le=64)
    chunk_max_frames: int = Field(default=16, ge=1, le=256)
    crossfade_ms: float = Field(default=20.0, ge=0.0, le=42.0)

    # --- decoder service ---
    dynamic_batching: bool | Literal["auto"] = "auto"
    microsleep: float = Field(default=0.002, ge=0.0, le=1.0)
    max_batch_size: int = Field(default=16, ge=1, le=1024)
    decode_queue_size: int = Field(default=1024, ge=1)
    torch_threads: int | None = Field(default=None, ge=1)
    memory_trim_interval: float = Field(
        default=10.0, ge=0, description="Seconds between returns of freed heap to the OS; 0: off"
    )

    # --- storage / cloning ---
    data_dir: Path = Path("data")
    voice_store_url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql://...; unset: SQLite under DATA_DIR.",
    )
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    min_reference_seconds: float = Field(default=1.0, ge=0.1)
    max_reference_seconds: float = Field(default=30.0, ge=1.0)
    max_reference_encodes: int = Field(
        default=2, ge=1, description="Reference clips SNAC-encoded at once; beyond: 503"
    )
    max_voices_per_key: int = Field(
        default=100, ge=0, description="Saved voices per API key (open gateway: in all); 0: no cap"
    )

    # --- protection / observability ---
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys_file: Path | None = None
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Keys that also manage every saved voice and may save shared ones",
    )
    protect_health: bool = False
    max_concurrent_streams: int = Field(default=64, ge=1)
    rate_limit_per_minute: int = Field(default=0, ge=0, description="0 disables rate limiting")
    auth_failures_per_minute: int = Field(
        default=20, ge=0, description="Wrong API keys per client IP per minute; 0: unlimited"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    web_ui: bool = Field(default=True, description="Serve the browser page at /")
    sentry_dsn: str | None = None

    @field_validator("speakers", "api_keys", "admin_api_keys", "cors_origins", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("voice_aliases", mode="before")
    @classmethod
    def _aliases(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("expected JSON or alias=voice pairs separated by commas")
            return {alias.strip(): voice.strip() for alias, voice in pairs}
        return value

    @field_validator("tts_api", "sentry_dsn", "tts_api_key", "voice_store_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("voice_store_url")
    @classmethod
    def _store_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("sqlite:///", "postgresql://", "postgres://")
        ):
            raise ValueError("expected sqlite:///path or postgresql://user:pass@host/db")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.speakers:
            raise ValueError("SPEAKERS must name at least one voice")
        if self.default_speaker not in self.speakers:
            raise ValueError(
                f"DEFAULT_SPEAKER {self.default_speaker!r} is not one of SPEAKERS {self.speakers}"
            )
        if "voice_aliases" not in self.model_fields_set:
            # The built-in table must not break a custom SPEAKERS list.
            self.voice_aliases = {
                alias: voice if voice in self.speakers else self.default_speaker
                for alias, voice in self.voice_aliases.items()
            }
        unknown = {a: v for a, v in self.voice_aliases.items() if v not in self.speakers}
        if unknown:
            raise ValueError(f"VOICE_ALIASES map to voices not in SPEAKERS: {unknown}")
        if self.backend_backoff_seconds > self.backend_max_backoff_seconds:
            raise ValueError("BACKEND_BACKOFF_SECONDS must not exceed BACKEND_MAX_BACKOFF_SECONDS")
        if self.chunk_first_frames > self.chunk_max_frames:
            raise ValueError("CHUNK_FIRST_FRAMES must not exceed CHUNK_MAX_FRAMES")
        if self.segment_first_max_chars > self.segment_max_chars:
            raise ValueError("SEGMENT_FIRST_MAX_CHARS must not exceed SEGMENT_MAX_CHARS")
        return self

    @property
    def backend_urls(self) -> list[str]:
        if not self.tts_api:
            return []
        return [url.strip().rstrip("/") for url in self.tts_api.split(",") if url.strip()]


class SettingsError(Exception):
    """Raised with a message that names each offending environment variable."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(part) for part in err["loc"]).upper() or "settings"
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(lines)) from exc
