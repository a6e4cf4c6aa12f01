"""Reading users' Git repositories: URL checks, branch listing, build-strategy detection.

The only package that runs git or imports GitPython; everything above it sees plain strings and
Kapsa's own errors (SourceError, UnsafeURLError).
"""
