"""Datasets users uploaded: validated, stored as one ``.npz`` artefact, referred to by id in training."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, utcnow


class Dataset(Base):
    """An uploaded dataset; `artifact_id` is its canonical ``.npz`` (what workers load), `info` its shape."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    format: Mapped[str] = mapped_column(String(32), doc="what was uploaded: npz, imagefolder or idx")
    upload_sha256: Mapped[str] = mapped_column(String(64), doc="sha256 of the uploaded file")
    upload_size: Mapped[int] = mapped_column(BigInteger, doc="bytes uploaded")
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="RESTRICT"))
    info: Mapped[dict[str, Any]] = mapped_column(JSON, doc="images per split, image size, channels, classes")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
