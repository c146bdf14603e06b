"""Tooling around the `claudesidian_synthetic` builder: KTO helpers, dataset card and export, CLI."""
