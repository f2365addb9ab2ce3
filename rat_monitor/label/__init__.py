"""Labelling your own footage in the browser: frame picking, the project on disk, the server and its pages,
exports, and the fine-tuning loop."""
