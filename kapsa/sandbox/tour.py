"""`kapsa sandbox tour`: a developer's day against a running sandbox, narrated.

Each step does what a developer does (push to main, open a feature branch, push a broken
commit, fix it) and then reports what Kapsa did in response, read from the API server and the
ledger, and what the apps themselves answer on the real node, so the tour shows behaviour rather
than describing it. A step that Kapsa does not
complete in time is reported as such, and the tour goes on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from kapsa.errors import KapsaError, SourceError
from kapsa.k8s.client import Kube
from kapsa.ledger import Ledger
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.stack import (
    ProjectView,
    SandboxState,
    app_answer,
    changes,
    observe,
    sample_files,
)

FEATURE_BRANCH = "feature/new-api"
STEP_TIMEOUT = 120.0


def _short(commit: str | None) -> str:
    return commit[:7] if commit else "nothing"


@dataclass
class Tour:
    state: SandboxState
    console: Console
    timeout: float = STEP_TIMEOUT
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kube = Kube.from_kubeconfig(self.state.kubeconfig)
        # The repositories are written with git plumbing straight into the bare folders: the
        # tour needs no connection to the daemon the supervisor runs.
        self.git = GitServer(Path(self.state.git_dir))
        self.project = self.state.project
        self.repository = self.state.repository
        self._seen: ProjectView | None = None

    # -- narration -----------------------------------------------------------------------------

    def _title(self, number: int, text: str) -> None:
        self.console.print()
        self.console.print(Rule(f"[bold]{number}. {text}", align="left"))

    def _you(self, text: str) -> None:
        self.console.print(f"[cyan]you[/]    {text}")

    def _kapsa(self, text: str) -> None:
        self.console.print(f"[green]kapsa[/]  {text}")

    def _answers(self, *environments: str) -> None:
        """What each environment's app says now, asked through its Service on the real node."""
        if not self.state.node_netns:
            self.console.print(
                "[dim]       (no node here: the kubelet is SIMULATED, no app runs)[/]"
            )
            return
        for name in environments:
            try:
                said = app_answer(
                    self.kube,
                    netns=self.state.node_netns,
                    namespace=self.state.namespace,
                    environment=name,
                )
            except KapsaError as error:
                self._problem(f"{name} does not answer: {error}")
                continue
            self.console.print(
                f"[magenta]app[/]    {name} answers: {' | '.join(said.splitlines())}"
            )

    def _problem(self, text: str) -> None:
        self.failures.append(text)
        self.console.print(f"[red]not yet[/] {text}")

    def _view(self) -> ProjectView:
        view = observe(self.kube, self.project)
        if view is None:
            raise SourceError(f"Project {self.project} is gone from the sandbox")
        return view

    def _until(self, done: Callable[[ProjectView], bool], *, what: str) -> ProjectView | None:
        """Poll, narrating every move Kapsa makes, until `done` holds or the step times out."""
        deadline = time.monotonic() + self.timeout
        with self.console.status(f"waiting: {what}"):
            while True:
                view = self._view()
                for line in changes(self._seen, view):
                    self.console.print(f"[dim]       {line}[/]")
                self._seen = view
                if done(view):
                    return view
                if time.monotonic() > deadline:
                    self._problem(f"{what}: not within {self.timeout:.0f}s")
                    return None
                time.sleep(0.5)

    # -- the steps -----------------------------------------------------------------------------

    def run(self) -> bool:
        start = self._view()
        self._seen = start
        self.console.print(
            f"Project [bold]{self.project}[/] is {start.phase}; "
            f"dev runs {_short(_commit(start, 'dev'))}, prod runs {_short(_commit(start, 'prod'))}."
        )
        self.push_to_main()
        self.open_feature_branch()
        self.break_the_build()
        self.fix_the_build()
        self.show_history()
        self.console.print()
        if self.failures:
            self.console.print(
                f"[red]The tour finished with {len(self.failures)} step(s) "
                "Kapsa did not complete:[/]"
            )
            for failure in self.failures:
                self.console.print(f"  - {failure}")
            return False
        self.console.print("[bold green]Tour complete.[/]")
        return True

    def push_to_main(self) -> None:
        self._title(1, "Push a commit to main: dev follows it, prod stays")
        prod_before = self._view().environment("prod")
        commit = self.git.commit(
            self.repository,
            branch="main",
            files={"greeting.txt": "Bonjour de Kapsa\n"},
            message="Greet in French",
        )
        self._you(f"pushed {_short(commit)} to main: Greet in French")
        view = self._until(lambda v: _runs(v, "dev", commit), what=f"dev running {_short(commit)}")
        if view is None:
            return
        self._kapsa(f"built {_short(commit)} and rolled it out: dev runs {_short(commit)}")
        prod = view.environment("prod")
        if prod and prod_before and prod.commit == prod_before.commit:
            self._kapsa(
                f"prod still runs {_short(prod.commit)}: autoSync is off; "
                f"`kapsa promote {self.project} dev prod` would move it"
            )
        else:
            self._problem(f"prod moved to {_short(_commit(view, 'prod'))} although autoSync is off")
        self._answers("dev", "prod")

    def open_feature_branch(self) -> None:
        self._title(2, f"Open {FEATURE_BRANCH}: a preview environment appears")
        # On a second tour the branch is already there; a new commit on it will do.
        with contextlib.suppress(SourceError):
            self.git.create_branch(self.repository, FEATURE_BRANCH, from_branch="main")
        commit = self.git.commit(
            self.repository,
            branch=FEATURE_BRANCH,
            files={"greeting.txt": "Hello from the new API\n"},
            message="Greet from the new API",
        )
        self._you(f"pushed {_short(commit)} to a new branch {FEATURE_BRANCH}")

        def preview_runs(view: ProjectView) -> bool:
            return any(
                env.type == "preview"
                and env.branch == FEATURE_BRANCH
                and env.phase == "Running"
                and env.commit == commit
                and env.url
                for env in view.environments.values()
            )

        view = self._until(preview_runs, what=f"a preview environment for {FEATURE_BRANCH}")
        if view is None:
            return
        preview = next(
            env
            for env in view.environments.values()
            if env.type == "preview" and env.branch == FEATURE_BRANCH
        )
        expires = f", expires {preview.expires_at}" if preview.expires_at else ""
        self._kapsa(f"preview {preview.name} runs {_short(commit)} at {preview.url}{expires}")
        self._answers(preview.name)

    def break_the_build(self) -> None:
        self._title(3, "Push a commit that does not build: environments keep running")
        before = self._view()
        commit = self.git.commit(
            self.repository, branch="main", delete=["Procfile"], message="Tidy up the root folder"
        )
        self._you(
            f"pushed {_short(commit)} to main: Tidy up the root folder "
            "(it deletes the Procfile, so buildpacks find nothing to run)"
        )
        view = self._until(lambda v: v.phase == "Failed", what="the Project to report the build")
        if view is None:
            return
        built = view.conditions.get("BuildSucceeded", {})
        self._kapsa(f"Build failed: {built.get('message') or view.message}")
        for name in ("dev", "prod"):
            env, old = view.environment(name), before.environment(name)
            if env and old and env.phase == "Running" and env.commit == old.commit:
                self._kapsa(f"{name} still runs {_short(env.commit)} (its last good image)")
            else:
                self._problem(f"{name} did not keep running its last good image")
        self._answers("dev")

    def fix_the_build(self) -> None:
        self._title(4, "Fix it: the next commit builds and rolls out")
        commit = self.git.commit(
            self.repository,
            branch="main",
            files={"Procfile": sample_files()["Procfile"]},
            message="Bring the Procfile back",
        )
        self._you(f"pushed {_short(commit)} to main: Bring the Procfile back")
        view = self._until(
            lambda v: v.phase == "Running" and _runs(v, "dev", commit),
            what=f"the Project Running with dev on {_short(commit)}",
        )
        if view is not None:
            self._kapsa(f"Project Running again; dev runs {_short(commit)}")
            self._answers("dev")

    def show_history(self) -> None:
        self._title(5, "What the ledger recorded")
        with Ledger.open(self.state.ledger_url, create=False) as ledger:
            entries = ledger.history(project=self.project)
        table = Table(box=None, header_style="bold")
        for column in ("TIME", "OBJECT", "TRANSITION", "TRIGGER", "REASON", "COMMIT"):
            table.add_column(column, no_wrap=True)
        for entry in entries:
            table.add_row(
                entry.at.strftime("%H:%M:%S"),
                f"{entry.kind}/{entry.name}",
                f"{entry.from_state} -> {entry.to_state}",
                entry.trigger,
                entry.reason,
                _short(entry.commit) if entry.commit else "-",
            )
        self.console.print(table)
        self.console.print(
            f"[dim]The same, with images and messages: kapsa history {self.project} "
            f"--ledger {self.state.ledger_url}[/]"
        )


def _runs(view: ProjectView, name: str, commit: str) -> bool:
    env = view.environment(name)
    return env is not None and env.phase == "Running" and env.commit == commit


def _commit(view: ProjectView, name: str) -> str | None:
    env = view.environment(name)
    return env.commit if env else None
