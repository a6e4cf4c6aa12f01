"""Builders behind one interface: kpack for buildpacks, a Job for Dockerfiles.

A builder turns (branch, commit) into a build object's manifest and reads the object back as a
`BuildResult`; applying the manifest is the reconciler's job, so builders hold no client.
"""

from kapsa.build.base import BuildRequest, BuildResult
from kapsa.build.dockerfile import DockerfileBuilder
from kapsa.build.kpack import KpackBuilder

__all__ = ["BuildRequest", "BuildResult", "DockerfileBuilder", "KpackBuilder"]
