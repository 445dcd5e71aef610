"""Hugging Face conventions for students: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

They read and write the model folder disdepth already ships (``config.json`` with the input spec and the resolved
config, ``model.safetensors``, a ``README.md`` model card; :func:`disdepth.checkpoint.save_model_folder`), so a folder
written by training, by ``save_pretrained`` or downloaded from the hub is one format::

    student = DepthStudent.from_pretrained("runs/mine/distill/model")     # or "my-org/my-student" on the hub
    student.save_pretrained("exported/")                                 # config.json + model.safetensors + card
    student.push_to_hub("my-org/my-student")                             # huggingface_hub.HfApi().upload_folder

The hub functions are ``huggingface_hub``'s own (``snapshot_download``, ``HfApi.create_repo``/``upload_folder``; the
``hf`` extra). Loading is safe: safetensors and JSON only, never unpickling.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from disdepth.checkpoint import CheckpointKind, deployable_weights, read_checkpoint, save_model_folder

# What a student's folder holds on the hub; nothing else is downloaded.
FOLDER_FILES = ["config.json", "model.safetensors", "README.md"]


class StudentHubMixin:
    """Adds the Hugging Face save/load/push methods to :class:`disdepth.models.student.DepthStudent`.

    ``disdepth_config`` is the resolved config (a plain dict) the student was trained with: set when it was loaded
    from a folder or checkpoint, else given to :meth:`save_pretrained` as ``config``.
    """

    disdepth_config: dict[str, Any] | None = None

    def save_pretrained(self, save_directory: str | Path, config: Any = None, card: str = "") -> Path:
        """Write the student as a model folder; returns its path.

        Args:
            config: the :class:`disdepth.config.Config` (or its dict) the student was built from; default: the one
                it was loaded with.
            card: the model card (``README.md``); default: a short card naming the encoder and the output units.
        """
        resolved = asdict(config) if is_dataclass(config) else config if config is not None else self.disdepth_config
        if not isinstance(resolved, dict):
            raise ValueError(
                "save_pretrained: pass config= (the Config the student was built from); a student built with "
                "build_student does not know its whole config"
            )
        spec = self.input_spec  # type: ignore[attr-defined]
        units = "depth in metres" if spec.metric else f"RELATIVE depth ({spec.units}), not metres"
        encoder = resolved.get("model", {}).get("encoder", "?")
        card = card or (
            f"# disdepth student ({encoder})\n\nOutput: {units}. Load it with "
            "`DepthStudent.from_pretrained(folder_or_repo)` or `disdepth.load(folder)`.\n"
        )
        weights = self.state_dict()  # type: ignore[attr-defined]
        return save_model_folder(save_directory, CheckpointKind.STUDENT, weights, spec.to_dict(), resolved, card)

    @classmethod
    def from_pretrained(
        cls,
        folder_or_repo: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | None = None,
    ) -> Any:
        """A student from a local model folder, a ``.pt`` checkpoint, or a hub repo id (downloaded by
        ``huggingface_hub.snapshot_download``: only config.json, model.safetensors and README.md).

        Raises:
            FileNotFoundError / ValueError: naming the folder when it is not a disdepth student.
        """
        from disdepth.config import config_from_dict
        from disdepth.models.student import build_student

        path = Path(folder_or_repo)
        if not path.exists():
            from huggingface_hub import snapshot_download

            path = Path(
                snapshot_download(
                    str(folder_or_repo), revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                    token=token, allow_patterns=FOLDER_FILES,
                )
            )  # fmt: skip
        state = read_checkpoint(path)
        if state["kind"] != CheckpointKind.STUDENT:
            raise ValueError(f"{path}: holds a {state['kind'].value}, not a student")
        model = build_student(config_from_dict(state["config"]).model, load_weights=False)
        try:
            model.load_state_dict(deployable_weights(state), strict=True)
        except RuntimeError as exc:
            detail = str(exc).strip().splitlines()[-1].strip()[:300]
            raise ValueError(f"{path}: its weights do not fit the student its config describes ({detail})") from None
        model.disdepth_config = state["config"]
        return model.eval()

    def push_to_hub(
        self,
        repo_id: str,
        *,
        config: Any = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload disdepth student",
    ) -> Any:
        """Create ``repo_id`` if needed and upload the model folder (:meth:`save_pretrained`) with
        ``huggingface_hub.HfApi.upload_folder``; returns its commit info."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory(prefix="disdepth-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "model", config=config)
            return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
