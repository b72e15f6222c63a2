"""Run ramp-board 0.10.1's command-line tools with this kit's workarounds applied.

Usage (with the ramp-board virtual environment's Python)::

    .venv-rampboard/bin/python rampboard/ramp_compat.py ramp-launch dispatcher \\
        --config config.yml --event-config events/EVENT/config.yml

The first argument names one of ramp-board's commands (``ramp-setup``,
``ramp-database``, ``ramp-launch``, ``ramp-frontend``); the others go to it
unchanged. Before the command runs, :func:`apply` makes these changes in the
running process only (no file of ramp-board is edited):

* numpy scalars are sent to PostgreSQL as numbers (psycopg2 quotes
  ``np.float64`` with ``repr``, ``np.float64(0.5)`` under numpy 2);
* ``add_event_admin`` adds its row to the session (it relied on SQLAlchemy 1's
  "cascade_backrefs", gone in SQLAlchemy 2: the event admin was never saved);
* a ``venv`` worker type, :class:`VenvWorker`: ramp-engine's only local worker,
  ``CondaEnvWorker``, looks up ``conda info --envs`` to find ``ramp-test``;
  this one runs ``sandboxed_ramp_test.py`` (rampwf's ``ramp-test`` with every
  ``fit`` and ``predict`` in the kit's bubblewrap sandbox, scored outside) with
  the Python of a plain virtual environment (the kit's ``.venv``), with extra
  environment variables from the event config;
* the dispatcher pauses between its polls while submissions train (it spins);
  with ``RAMP_COMPAT_CONTRIBUTIVITY=1`` it also runs ``compute-contributivity``
  after each round it scores (``deploy.sh serve``);
* ``ramp_frontend.views.visualization.score_plot`` (the event page's score
  versus time plot) uses ``DataFrame.append`` (removed in pandas 2), bokeh 2
  options (removed in bokeh 3) and scikit-image (not installed): a port
  replaces it, and a template of ours loads the installed BokehJS from this
  server (``/bokehjs/``) instead of BokehJS 1.4.0 from a dead CDN;
* the admin page ``/user_interactions`` fails (HTTP 500, ``KeyError:
  'timestamp (UTC)'``) while no interaction is recorded: an empty table instead.

The workarounds that need no code (an undeclared dependency installed, the
SQLAlchemy driver name, pinned versions) are in ``rampboard/README.md``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime

__all__ = ["VenvWorker", "apply", "main", "COMMANDS"]

#: ramp-board's console scripts: name -> (module, function).
COMMANDS = {
    "ramp-setup": ("ramp_utils.cli", "start"),
    "ramp-database": ("ramp_database.cli", "start"),
    "ramp-launch": ("ramp_engine.cli", "start"),
    "ramp-frontend": ("ramp_frontend.cli", "start"),
}

log = logging.getLogger("RAMP-WORKER")

#: The worker's ramp-test: rampwf's, with every fit and predict in the kit's sandbox.
SANDBOXED_RAMP_TEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandboxed_ramp_test.py")


def _worker_base():
    from ramp_engine.local import CondaEnvWorker

    return CondaEnvWorker


class _VenvWorkerMixin:
    """The body of :class:`VenvWorker` (see there); kept apart so that importing
    this module does not import ramp-engine (which opens ``worker.log`` in the
    current directory at import)."""

    def setup(self):
        for required in ("kit_dir", "data_dir", "submissions_dir", "logs_dir", "predictions_dir"):
            self._check_config_name(self.config, required)
        ramp_test = self.config.get("ramp_test")
        if ramp_test is None:
            venv_dir = self.config.get("venv_dir")
            if venv_dir is None:
                self.status = "error"
                raise ValueError(
                    "the venv worker needs 'venv_dir' (a virtual environment with ramp-workflow "
                    "and the kit installed) or 'ramp_test' (path of its ramp-test) in the "
                    "event config's worker section; got neither"
                )
            ramp_test = os.path.join(venv_dir, "bin", "ramp-test")
        if not (os.path.isfile(ramp_test) and os.access(ramp_test, os.X_OK)):
            self.status = "error"
            raise ValueError(f"the venv worker's ramp-test {ramp_test!r} is not an executable file")
        env = self.config.get("env") or {}
        if not isinstance(env, dict):
            self.status = "error"
            raise ValueError(f"the venv worker's 'env' must be a mapping NAME: value, got {env!r}")
        limits = self.config.get("sandbox_limits") or {}
        if not isinstance(limits, dict):
            self.status = "error"
            raise ValueError(f"the venv worker's 'sandbox_limits' must be a mapping, got {limits!r}")
        self._ramp_test = ramp_test
        self._python = os.path.join(os.path.dirname(ramp_test), "python")
        self._env = {str(k): str(v) for k, v in env.items()}
        self._limits = dict(limits)
        self.status = "setup"

    def command(self) -> list:
        """``sandboxed_ramp_test.py`` (rampwf's ramp-test, fit and predict in the sandbox) with the kit's Python."""
        cmd = [
            "nice", "-n", str(int(self.config.get("nice", 5))),
            self._python, SANDBOXED_RAMP_TEST,
            "--submission", self.submission,
            "--ramp-kit-dir", self.config["kit_dir"],
            "--ramp-data-dir", self.config["data_dir"],
            "--ramp-submission-dir", self.config["submissions_dir"],
            "--save-output", "--ignore-warning",
            "--timeout", str(int(self.timeout)),
            "--limits", json.dumps(self._limits),
        ]
        for name in sorted(self._env):
            cmd += ["--pass-env", name]
        return cmd

    def launch_submission(self):
        """Start the sandboxed ``ramp-test --submission NAME --save-output`` in a subprocess."""
        if self.status == "running":
            raise ValueError("Wait that the submission is processed before to launch a new one.")
        self._log_dir = os.path.join(self.config["logs_dir"], self.submission)
        os.makedirs(self._log_dir, exist_ok=True)
        self._log_file = open(os.path.join(self._log_dir, "log"), "wb+")
        cmd = self.command()
        env = dict(os.environ)
        # The dispatcher's own virtual environment must not leak into the kit's.
        for var in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH"):
            env.pop(var, None)
        env["PATH"] = os.pathsep.join(
            [os.path.dirname(self._ramp_test)]
            + [p for p in env.get("PATH", "").split(os.pathsep)
               if p and os.path.realpath(p) != os.path.realpath(os.path.dirname(sys.executable))]
        )
        env.update(self._env)
        log.info("venv worker: %s", " ".join(cmd))
        # in the dispatcher's process group: deploy.py's cleanup of that group reaches it (the
        # sandbox inside dies with it: bubblewrap's --die-with-parent)
        self._proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=self._log_file, env=env)
        self._status = "running"
        self._start_date = datetime.utcnow()

    def teardown(self):
        """Remove ramp-test's ``training_output`` (already copied to the predictions folder).

        ``CondaEnvWorker.teardown`` looks for it in the kit's ``submissions``
        folder, where ramp-test does not write it (``--ramp-submission-dir`` is
        the event's), so it stayed behind.
        """
        if self.status not in ("collected", "retry"):
            raise ValueError("Collect the results before to kill the worker.")
        out = os.path.join(self.config["submissions_dir"], self.submission, "training_output")
        if os.path.exists(out):
            shutil.rmtree(out)
        self.status = "killed"


_VENV_WORKER = None


def _venv_worker_class():
    global _VENV_WORKER
    if _VENV_WORKER is None:
        base = _worker_base()
        _VENV_WORKER = type(
            "VenvWorker",
            (_VenvWorkerMixin, base),
            {"__doc__": VenvWorker.__doc__, "__module__": __name__},
        )
    return _VENV_WORKER


class VenvWorker:
    """ramp-engine worker that runs ``ramp-test`` from a plain virtual environment.

    Worker section of the event config::

        worker:
          worker_type: venv
          venv_dir: /path/to/.venv      # or ramp_test: /path/to/.venv/bin/ramp-test
          env: {NAME: value}            # optional, added to ramp-test's environment (and the sandbox's)
          timeout: 7200                 # optional, seconds (as CondaEnvWorker; also the sandbox's wall clock)
          nice: 5                       # optional, niceness of ramp-test
          sandbox_limits: {memory_bytes: 8589934592, cpu_seconds: 3600, max_processes: 64, ...}
                                        # optional, deblendkit.ramp.sandbox.SandboxLimits fields

    Every ``fit`` and ``predict`` runs in the sandbox (``sandboxed_ramp_test.py``);
    there is no unsandboxed mode: without bubblewrap the submission ends in
    ``training_error`` saying so.

    A subclass of ramp-engine's ``CondaEnvWorker``: ``setup`` (no conda lookup),
    ``launch_submission`` (the environment above) and ``teardown`` are its own;
    the status and timeout checks and ``collect_results`` (copy of
    ``training_output`` to the event's predictions folder, error message from
    the log) are ``CondaEnvWorker``'s. ``VenvWorker(config, submission)``
    returns an instance of that subclass, made when first needed since
    importing ramp-engine has side effects (it opens log files in the current
    directory).
    """

    def __new__(cls, config, submission):
        return _venv_worker_class()(config, submission)


def _color_gradient(rgb, factor_array):
    """``visualization.color_gradient`` without scikit-image (an undeclared dependency).

    As there: the complement of ``rgb`` (with its blue used twice, as in the
    original), turned to grey with the weights of ``skimage.color.rgb2gray``
    on values in [0, 1], times each factor, complemented; (n, 3) grey levels.
    """
    import numpy as np

    inverted = np.array([(255 - rgb[0], 255 - rgb[2], 255 - rgb[2]) for _ in factor_array], dtype=float)
    grey = (inverted / 255.0) @ np.array([0.2125, 0.7154, 0.0721])
    levels = 255 - grey * np.asarray(factor_array, dtype=float)
    return np.repeat(levels[:, None], 3, axis=1)


def _score_plot(session, event):
    """``ramp_frontend.views.visualization.score_plot`` ported to pandas >= 2 and bokeh 3.

    A copy of ramp-frontend 0.10.1's function (BSD-3-Clause, the RAMP
    developers) with only these changes: ``pd.concat`` for the removed
    ``DataFrame.append``; ``width`` / ``height``, ``scatter(marker="circle")``,
    ``legend_field`` / ``legend_label`` and one format string per
    ``DatetimeTickFormatter`` field for the bokeh 2 spellings bokeh 3 removed.
    """
    import numpy as np
    import pandas as pd
    from bokeh.models.formatters import DatetimeTickFormatter
    from bokeh.models.sources import ColumnDataSource
    from bokeh.plotting import figure
    from ramp_database.tools.submission import get_submission_by_id, get_submissions
    from ramp_frontend.views.visualization import add_pareto, make_step_df

    submissions = get_submissions(session, event.name, None)
    submissions = [
        get_submission_by_id(session, sub_id)
        for sub_id, _, _ in submissions
        if get_submission_by_id(session, sub_id).is_public_leaderboard
        and get_submission_by_id(session, sub_id).is_valid
    ]
    score_names = [score_type.name for score_type in event.score_types]
    scoress = np.array(
        [[score.valid_score_cv_bag for score in submission.ordered_scores(score_names)]
         for submission in submissions]
    ).T

    score_plot_df = pd.DataFrame()
    score_plot_df["submitted at (UTC)"] = [submission.submission_timestamp for submission in submissions]
    score_plot_df["contributivity"] = [submission.contributivity for submission in submissions]
    score_plot_df["historical contributivity"] = [
        submission.historical_contributivity for submission in submissions
    ]
    for score_name in score_names:  # to make sure the column is created
        score_plot_df[score_name] = 0
    for score_name, scores in zip(score_names, scoress):
        score_plot_df[score_name] = scores

    score_name = event.official_score_name
    score_plot_df = score_plot_df[score_plot_df["submitted at (UTC)"] > event.opening_timestamp]
    score_plot_df = score_plot_df.sort_values("submitted at (UTC)")
    score_plot_df = add_pareto(
        score_plot_df, score_name, event.official_score_type.worst,
        event.official_score_type.is_lower_the_better,
    )
    is_open = (score_plot_df["submitted at (UTC)"] > event.public_opening_timestamp).values

    max_contributivity = max(0.0000001, max(score_plot_df["contributivity"].values))
    max_historical_contributivity = max(0.0000001, max(score_plot_df["historical contributivity"].values))
    fill_colors_1 = _color_gradient((176, 23, 31), score_plot_df["contributivity"].values / max_contributivity)
    fill_colors_2 = _color_gradient(
        (16, 78, 139), score_plot_df["historical contributivity"].values / max_historical_contributivity
    )
    fill_colors = np.minimum(fill_colors_1, fill_colors_2).astype(int)
    fill_colors = ["#%02x%02x%02x" % (c[0], c[1], c[2]) for c in fill_colors]

    score_plot_df["x"] = score_plot_df["submitted at (UTC)"]
    score_plot_df["y"] = score_plot_df[score_name]
    score_plot_df["circle_size"] = 8
    score_plot_df["line_color"] = "royalblue"
    score_plot_df.loc[is_open, "line_color"] = "coral"
    score_plot_df["fill_color"] = fill_colors
    score_plot_df["fill_alpha"] = 0.5
    score_plot_df["line_width"] = 0
    score_plot_df["label"] = "closed phase"
    score_plot_df.loc[is_open, "label"] = "open phase"

    source = ColumnDataSource(score_plot_df)
    pareto_df = score_plot_df[score_plot_df[score_name + " pareto"] == 1].copy()
    pareto_df = pd.concat([pareto_df, pareto_df.iloc[[-1]]])
    pareto_df.iloc[-1, pareto_df.columns.get_loc("x")] = max(score_plot_df["x"])
    pareto_df = make_step_df(pareto_df, event.official_score_type.is_lower_the_better)
    source_pareto = ColumnDataSource(pareto_df)

    tools = ["pan,wheel_zoom,box_zoom,reset,save,tap"]
    p = figure(width=900, height=600, tools=tools, title="Scores")
    p.scatter(
        "x", "y", marker="circle", size="circle_size", line_color="line_color",
        fill_color="fill_color", fill_alpha="fill_alpha", line_width=1, source=source,
        legend_field="label",
    )
    p.line(
        "x", "y", line_width=3, line_color="goldenrod", source=source_pareto,
        legend_label="best score", alpha=0.9,
    )
    p.xaxis.formatter = DatetimeTickFormatter(
        hours="%d %B %Y", days="%d %B %Y", months="%d %B %Y", years="%d %B %Y",
    )
    p.xaxis.major_label_orientation = np.pi / 4
    if event.official_score_type.is_lower_the_better:
        p.yaxis.axis_label = score_name + " (the lower the better)"
        p.legend.location = "top_right"
    else:
        p.yaxis.axis_label = score_name + " (the greater the better)"
        p.legend.location = "bottom_right"
    p.xaxis.axis_label = "submission timestamp (UTC)"
    p.xaxis.axis_label_text_font_size = "14pt"
    p.yaxis.axis_label_text_font_size = "14pt"
    p.legend.label_text_font_size = "14pt"
    p.title.text_font_size = "16pt"
    p.xaxis.major_label_text_font_size = "10pt"
    p.yaxis.major_label_text_font_size = "10pt"
    return p


def _register_numpy_adapters() -> None:
    """Send numpy scalars to PostgreSQL as plain numbers.

    ``np.float64`` subclasses ``float``, so psycopg2 quotes it with ``repr``,
    which numpy >= 2 writes as ``np.float64(0.5)``: PostgreSQL then fails with
    ``schema "np" does not exist`` when ramp-database stores the scores.
    """
    import numpy as np
    from psycopg2.extensions import AsIs, Float, register_adapter

    for t in (np.float16, np.float32, np.float64):
        register_adapter(t, lambda x: Float(float(x)))
    for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        register_adapter(t, lambda x: AsIs(int(x)))
    register_adapter(np.bool_, lambda x: AsIs("true" if x else "false"))


def _add_event_admin(session, event_name, user_name):
    """``ramp_database.tools.event.add_event_admin`` with the ``session.add`` it lacks.

    ramp-database makes ``EventAdmin(event=event, admin=user)`` and commits,
    relying on SQLAlchemy 1.x "cascade_backrefs" to put the new row in the
    session through the ``event`` backref; SQLAlchemy 2 removed that, so the
    row was silently never written (``SAWarning: Object of type <EventAdmin>
    not in session``) and the user never became the event's admin.
    """
    from ramp_database.model import EventAdmin
    from ramp_database.tools._query import select_event_admin_by_instance, select_event_by_name, select_user_by_name

    event = select_event_by_name(session, event_name)
    user = select_user_by_name(session, user_name)
    if select_event_admin_by_instance(session, event, user) is None:
        session.add(EventAdmin(event=event, admin=user))
        session.commit()


def _quiet_harmless_sa_warning() -> None:
    """Silence SQLAlchemy 2's warning about ``Submission`` objects, which is harmless.

    ``Submission.__init__`` queries (autoflushing) before ``add_submission``
    puts the new submission in the session, and SQLAlchemy 2 warns that the
    backref "add operation along 'EventTeam.submissions' will not proceed";
    the explicit ``session.add`` that follows saves it (checked: the
    submissions, their folds and scores are all in the database). Only that
    message is silenced; the same warning about any other class still shows.
    """
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings(
        "ignore", category=SAWarning,
        message=r"Object of type <Submission> not in session, add operation along 'EventTeam\.submissions'",
    )


def _pace(collect_result):
    """``Dispatcher.collect_result`` followed by a pause while submissions are training.

    ramp-engine's dispatcher loop (fetch from the database, launch, collect,
    update) has no pause while a worker runs (``time.sleep(0)``): it queries
    PostgreSQL and polls the worker as fast as it can, taking about a third of
    a core from the submissions it waits for. This waits
    ``time_between_collection`` seconds (at least 0.2) per turn instead.
    """

    def paced(self, session):
        result = collect_result(self, session)
        if not self._processing_worker_queue.empty():
            time.sleep(max(0.2, float(self.time_between_collection)))
        return result

    paced.__wrapped__ = collect_result
    return paced


#: Columns of ramp-database's user-interaction table (``get_user_interactions_by_name``).
USER_INTERACTION_COLUMNS = ("timestamp (UTC)", "IP", "interaction", "user", "event", "team", "submission_id",
                            "submission", "file", "code similarity", "diff")


def _user_interactions_compat(get_user_interactions_by_name):
    """``get_user_interactions_by_name`` that returns an empty table when no interaction is recorded.

    ramp-database builds the table from a dict of columns filled per interaction, then sorts it by
    ``"timestamp (UTC)"``: with no interaction the frame has no column at all, and the admin page
    ``/user_interactions`` fails with ``KeyError: 'timestamp (UTC)'`` (HTTP 500; interactions are
    recorded only with ``track_user_interaction: true``). Any other error is ramp-database's own.
    """

    def compat(session, name=None, output_format="dataframe"):
        try:
            return get_user_interactions_by_name(session, name=name, output_format=output_format)
        except KeyError as exc:
            if exc.args != ("timestamp (UTC)",):
                raise
        import pandas as pd

        df = pd.DataFrame(columns=list(USER_INTERACTION_COLUMNS)).set_index("timestamp (UTC)")
        if output_format == "html":
            return df.to_html(escape=False, index=False, max_cols=None, max_rows=None, justify="left")
        return df

    compat.__wrapped__ = get_user_interactions_by_name
    return compat


def _with_contributivity(update_database_results):
    """``Dispatcher.update_database_results`` followed by ``compute-contributivity`` when it scored something.

    Used by the dispatcher that ``deploy.sh serve`` keeps running (``RAMP_COMPAT_CONTRIBUTIVITY=1``):
    after each round of new results, the same steps as ``ramp-database compute-contributivity``
    (the greedy ensemble, each submission's contributivity, the historical ones, the leaderboards).
    A failure there is logged and does not stop the dispatcher.
    """

    def update_then_blend(self, session):
        processed = not self._processed_submission_queue.empty()
        update_database_results(self, session)
        if not processed:
            return
        from ramp_database.tools import contributivity, leaderboard

        cfg, name = self._ramp_config, self._ramp_config["event_name"]
        try:
            contributivity.compute_contributivity(session, name, cfg["ramp_kit_dir"], cfg["ramp_data_dir"],
                                                  cfg["ramp_predictions_dir"])
            contributivity.compute_historical_contributivity(session, name)
            leaderboard.update_leaderboards(session, name)
            leaderboard.update_all_user_leaderboards(session, name)
        except Exception:  # the dispatcher must go on training submissions
            session.rollback()
            log.exception("compute-contributivity after this round failed")

    update_then_blend.__wrapped__ = update_database_results
    return update_then_blend


#: Templates that replace ramp-frontend's own (same names).
TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def _wrap_create_app(create_app):
    """``ramp_frontend.create_app`` plus our templates first and BokehJS at ``/bokehjs/``."""

    def create_app_compat(config):
        import bokeh.util.paths
        import jinja2
        from flask import Blueprint

        app = create_app(config)
        app.jinja_loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(TEMPLATES_DIR), app.jinja_loader])
        app.register_blueprint(Blueprint(
            "bokehjs", __name__, static_folder=str(bokeh.util.paths.bokehjs_path()),
            static_url_path="/bokehjs",
        ))
        return app

    create_app_compat.__wrapped__ = create_app
    return create_app_compat


#: Which parts of ramp-board each command needs patched (see :func:`apply`).
COMMAND_PARTS = {
    "ramp-setup": ("database",),
    "ramp-database": ("database",),
    "ramp-launch": ("database", "engine"),
    "ramp-frontend": ("database", "frontend"),
}
_APPLIED: set[str] = set()


def apply(parts=("database", "engine", "frontend")) -> None:
    """Apply the workarounds of ``parts`` (idempotent).

    * ``"database"``: numpy scalars stored as plain numbers by psycopg2, and
      ``add_event_admin`` fixed for SQLAlchemy 2;
    * ``"engine"``: the ``venv`` worker type in ``ramp_engine.available_workers``;
    * ``"frontend"``: the score plot of the event page (pandas, bokeh,
      scikit-image), our ``event_plots.html`` template and BokehJS at ``/bokehjs/``,
      ``/user_interactions`` with no interaction recorded.
    """
    unknown = set(parts) - {"database", "engine", "frontend"}
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; expected database, engine, frontend")
    if "database" in parts and "database" not in _APPLIED:
        _register_numpy_adapters()
        import ramp_database.tools.event

        ramp_database.tools.event.add_event_admin = _add_event_admin
        _quiet_harmless_sa_warning()
        _APPLIED.add("database")
    if "engine" in parts and "engine" not in _APPLIED:
        import ramp_engine
        from ramp_engine.dispatcher import Dispatcher

        ramp_engine.available_workers["venv"] = VenvWorker
        Dispatcher.collect_result = _pace(Dispatcher.collect_result)
        if os.environ.get("RAMP_COMPAT_CONTRIBUTIVITY") == "1":
            Dispatcher.update_database_results = _with_contributivity(Dispatcher.update_database_results)
        _APPLIED.add("engine")
    if "frontend" in parts and "frontend" not in _APPLIED:
        import ramp_frontend
        import ramp_frontend.wsgi
        from ramp_frontend.views import admin as admin_views
        from ramp_frontend.views import ramp as ramp_views
        from ramp_frontend.views import visualization

        admin_views.get_user_interactions_by_name = _user_interactions_compat(
            admin_views.get_user_interactions_by_name)  # imported there by name

        visualization.color_gradient = _color_gradient
        visualization.score_plot = _score_plot
        ramp_views.score_plot = _score_plot  # imported there by name
        ramp_frontend.create_app = _wrap_create_app(ramp_frontend.create_app)
        ramp_frontend.wsgi.create_app = ramp_frontend.create_app  # imported there by name
        _APPLIED.add("frontend")


def main(argv: list[str] | None = None) -> int:
    """``ramp_compat.py COMMAND [ARGS...]``: run a ramp-board command after :func:`apply`."""
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(
            f"usage: {os.path.basename(sys.argv[0])} COMMAND [ARGS...] with COMMAND one of "
            f"{', '.join(COMMANDS)}; got {argv[:1] or 'nothing'}\n"
        )
        return 2
    name = argv[0]
    module_name, func = COMMANDS[name]
    apply(COMMAND_PARTS[name])
    module = importlib.import_module(module_name)
    sys.argv = [name] + argv[1:]
    try:
        getattr(module, func)()
    except SystemExit as exc:  # click exits when it is done
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
