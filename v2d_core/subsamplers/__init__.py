"""Transforms applied to each fetched sample: one sample in, a list of samples out.

``settings`` parses a config's ``subsampling`` section into typed arguments (imported by
the config, so it stays light); ``chain`` builds and runs the steps a job asks for; the
other modules are the steps and the ffmpeg / analysis machinery under them.
"""
