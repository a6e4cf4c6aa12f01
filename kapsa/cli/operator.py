"""`kapsa operator`: run the operator against a cluster."""

from __future__ import annotations

import logging
import signal
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from kapsa.cli import app
from kapsa.cli.durations import duration
from kapsa.cli.logs import configure_logging
from kapsa.errors import KapsaError


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@app.command()
def operator(
    kubeconfig: Annotated[
        str | None, typer.Option(help="Kubeconfig file; in-cluster credentials when unset.")
    ] = None,
    ledger: Annotated[
        str, typer.Option(envvar="KAPSA_LEDGER_URL", help="Ledger database URL.")
    ] = "sqlite:////var/lib/kapsa/ledger.db",
    namespace: Annotated[
        str, typer.Option(envvar="KAPSA_NAMESPACE", help="Namespace Kapsa runs in.")
    ] = "kapsa-system",
    workers: Annotated[int, typer.Option(min=1, help="Keys reconciled in parallel.")] = 4,
    resync: Annotated[
        timedelta,
        typer.Option(
            parser=duration,
            metavar="DURATION",
            show_default="10m",
            help="How often every object is reconciled again, changed or not.",
        ),
    ] = timedelta(minutes=10),
    leader_elect: Annotated[bool, typer.Option(help="Take a Lease before acting.")] = True,
    identity: Annotated[str | None, typer.Option(help="This replica's name in the Lease.")] = None,
    allow_insecure_sources: Annotated[
        bool, typer.Option(help="Accept git:// and file:// repositories (tests, sandbox).")
    ] = False,
    allow_private_hosts: Annotated[
        bool, typer.Option(help="Accept git and registry hosts on loopback or private ranges.")
    ] = False,
    git_cache: Annotated[Path, typer.Option(help="Where bare repositories are cached.")] = Path(
        "/var/cache/kapsa/git"
    ),
    confine_git: Annotated[
        bool,
        typer.Option(
            help="Run git in Landlock-confined threads that cannot open the API token or any "
            "file outside the system, /tmp and the git cache."
        ),
    ] = True,
    builder_image: Annotated[
        str,
        typer.Option(
            envvar="KAPSA_BUILDER_IMAGE",
            help="Image of Dockerfile builds (sh, git, buildah): build it from "
            "deploy/builder/Dockerfile and give it by digest.",
        ),
    ] = "kapsa-builder:0.1.0",
    build_host_network: Annotated[
        bool,
        typer.Option(
            envvar="KAPSA_BUILD_HOST_NETWORK",
            help="Build pods share the node's network: for test grounds whose git host and "
            "registry listen on the node's loopback.",
        ),
    ] = False,
    build_privileged: Annotated[
        bool,
        typer.Option(
            help="Run build containers privileged, where the cluster refuses the user "
            "namespace buildah's chroot isolation needs."
        ),
    ] = False,
    branch_gone_after: Annotated[
        int, typer.Option(min=1, help="Successful listings without a branch before it is gone.")
    ] = 2,
    registry_ca_bundle: Annotated[
        str | None, typer.Option(help="CA bundle for registries with a private CA.")
    ] = None,
    ssh_known_hosts: Annotated[
        Path | None, typer.Option(help="known_hosts of ssh git hosts every Project may trust.")
    ] = None,
    http_host: Annotated[
        str, typer.Option(envvar="KAPSA_HTTP_HOST", help="Address of the probes and webhooks.")
    ] = "0.0.0.0",  # noqa: S104 (the Service must reach the pod)
    http_port: Annotated[
        int, typer.Option(envvar="KAPSA_HTTP_PORT", min=0, max=65535, help="Their port.")
    ] = 8080,
    internal_host: Annotated[
        str,
        typer.Option(
            envvar="KAPSA_INTERNAL_HOST",
            help="Address of metrics and the ledger API; off loopback, callers need a token "
            "the API server authorizes.",
        ),
    ] = "127.0.0.1",
    internal_port: Annotated[
        int, typer.Option(envvar="KAPSA_INTERNAL_PORT", min=0, max=65535, help="Their port.")
    ] = 8081,
    min_poll_interval: Annotated[
        str, typer.Option(help="The shortest pollInterval honoured (a duration, e.g. 10s).")
    ] = "10s",
    reserved_namespace: Annotated[
        list[str] | None,
        typer.Option(help="A namespace no Project may take (repeat the option for more)."),
    ] = None,
    reserved_namespace_prefix: Annotated[
        list[str] | None,
        typer.Option(help="A prefix no Project name may start with (default kube-, openshift-)."),
    ] = None,
    namespace_quota: Annotated[
        list[str] | None,
        typer.Option(help="RESOURCE=QUANTITY of every Project namespace's quota; none for none."),
    ] = None,
    container_limit: Annotated[
        list[str] | None,
        typer.Option(help="RESOURCE=QUANTITY: the LimitRange's default container limit."),
    ] = None,
    container_request: Annotated[
        list[str] | None,
        typer.Option(help="RESOURCE=QUANTITY: the LimitRange's default container request."),
    ] = None,
    log_format: Annotated[LogFormat, typer.Option(help="text or json.")] = LogFormat.TEXT,
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="DEBUG, INFO, WARNING or ERROR.")
    ] = LogLevel.INFO,
) -> None:
    """Run the Kapsa operator until SIGTERM or SIGINT."""
    from kapsa.k8s.client import Kube
    from kapsa.ledger import Ledger
    from kapsa.reconcile.context import Settings
    from kapsa.reconcile.operator import Operator
    from kapsa.web import WebServer
    from kapsa.web.auth import KubeAuthorizer
    from kapsa.web.server import is_loopback

    configure_logging(fmt=log_format.value, level=log_level.value)
    settings = Settings(
        namespace=namespace,
        allow_insecure_sources=allow_insecure_sources,
        allow_private_hosts=allow_private_hosts,
        git_cache=git_cache,
        confine_git=confine_git,
        builder_image=builder_image,
        build_host_network=build_host_network,
        build_privileged=build_privileged,
        resync_seconds=resync.total_seconds(),
        branch_gone_after=branch_gone_after,
        registry_ca_bundle=registry_ca_bundle,
        ssh_known_hosts=ssh_known_hosts,
        **_tenancy_settings(
            min_poll_interval=min_poll_interval,
            reserved_namespace=reserved_namespace,
            reserved_namespace_prefix=reserved_namespace_prefix,
            namespace_quota=namespace_quota,
            container_limit=container_limit,
            container_request=container_request,
        ),
    )
    try:
        the_ledger = Ledger.open(ledger)
    except KapsaError as exc:
        typer.echo(f"kapsa operator: {exc}", err=True)
        raise typer.Exit(code=1) from None
    try:
        kube = Kube.from_kubeconfig(kubeconfig)
    except Exception as exc:  # the kubernetes package raises many kinds here
        typer.echo(f"kapsa operator: cannot load the cluster's credentials: {exc}", err=True)
        raise typer.Exit(code=1) from None
    the_operator = Operator(
        kube=kube,
        ledger=the_ledger,
        settings=settings,
        workers=workers,
        leader_election=leader_elect,
        identity=identity,
    )

    def _stop(_signum: int, _frame: object) -> None:
        the_operator.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    web = WebServer(
        host=http_host,
        port=http_port,
        internal_host=internal_host,
        internal_port=internal_port,
        authorizer=None if is_loopback(internal_host) else KubeAuthorizer(kube),
        ledger=the_ledger,
        trigger_poll=the_operator.trigger_poll,
        webhook_secret=the_operator.webhook_secret,
        ready=the_operator.ready,
    )
    # Up before the caches sync, so the liveness probe answers while they do.
    web.start()
    logging.getLogger("kapsa").info(
        "starting; ledger %s; http on %s:%s; internal http on %s:%s",
        ledger.split("@")[-1],
        http_host,
        web.port,
        internal_host,
        web.internal_port,
    )
    the_operator.start()
    the_operator.wait()
    web.stop()


def _pairs(values: list[str], option: str) -> tuple[tuple[str, str], ...]:
    if values == ["none"]:
        return ()
    pairs = []
    for value in values:
        key, sep, quantity = value.partition("=")
        if not sep or not key or not quantity:
            raise typer.BadParameter(f"{value!r}: use RESOURCE=QUANTITY", param_hint=option)
        pairs.append((key, quantity))
    return tuple(pairs)


def _tenancy_settings(
    *,
    min_poll_interval: str,
    reserved_namespace: list[str] | None,
    reserved_namespace_prefix: list[str] | None,
    namespace_quota: list[str] | None,
    container_limit: list[str] | None,
    container_request: list[str] | None,
) -> dict[str, Any]:
    """The Settings fields of the tenancy flags; unset list flags keep Settings' defaults."""
    from kapsa.api.common import parse_duration

    try:
        floor = parse_duration(min_poll_interval).total_seconds()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--min-poll-interval") from exc
    fields: dict[str, Any] = {"min_poll_interval": floor}
    if reserved_namespace:
        fields["reserved_namespaces"] = frozenset(reserved_namespace)
    if reserved_namespace_prefix is not None:
        fields["reserved_namespace_prefixes"] = tuple(p for p in reserved_namespace_prefix if p)
    if namespace_quota is not None:
        fields["namespace_quota"] = _pairs(namespace_quota, "--namespace-quota")
    if container_limit is not None:
        fields["container_limits"] = _pairs(container_limit, "--container-limit")
    if container_request is not None:
        fields["container_requests"] = _pairs(container_request, "--container-request")
    return fields
