"""Engines know models. Every backend implements `anchor_service.engines.base.Engine`."""
