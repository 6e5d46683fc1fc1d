"""Stress test for a streaming TTS gateway: `python -m stress_test burst|sweep|poisson ...`.

It talks to the gateway over HTTP (audio bytes or SSE events) only and never imports the
gateway's code, so it measures any OpenAI-compatible speech server the same way.
"""
