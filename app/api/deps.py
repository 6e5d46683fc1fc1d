"""Typed access to the process-wide objects the lifespan put on `app.state`."""

from __future__ import annotations

from fastapi import Request

from app.config import Settings
from app.service.jobs import JobFactory
from app.service.speech import SpeechPipeline


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def pipeline(request: Request) -> SpeechPipeline:
    value: SpeechPipeline = request.app.state.pipeline
    return value


def jobs(request: Request) -> JobFactory:
    value: JobFactory = request.app.state.jobs
    return value
