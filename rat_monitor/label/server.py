"""The labelling server: the boxes page, the scoring page and the JSON API they use (scripts and tests use the
same API). Local by default (127.0.0.1) and closed without the access token the command prints, given as
?token=... or an 'Authorization: Bearer ...' header. Every accepted change is on disk before it is answered.

    GET  /api/frames                 [{id, image, boxes, proposals, status}]   [x0, y0, x1, y1] in frame pixels;
                                     boxes are the person's, proposals the detector's (never labels by themselves)
    GET  /api/frames/{id}            one of them, with width and height
    PUT  /api/frames/{id}            {boxes, status[, proposals]}  status: unlabelled | labelled | no_face; the
                                     proposals still offered (those left out are turned down); a decided frame's
                                     proposals not kept among its boxes are turned down (hard negatives)
    GET  /api/progress               counts of frames by status, crops, scores per rater, the recommended
                                     detector's held-out verdict and the learning curve
    GET  /api/train                  the background fine-tune: running, epoch, last round's result, error
    POST /api/train                  start a round now (202; 409 while one runs or when training is unavailable)
    GET  /api/crops?rater=NAME       the crops in this rater's blind order, with their scores so far
    PUT  /api/scores/{crop}?rater=N  {orbital, nose, ears, whiskers (0-2), level} or {not_scorable: true}
    GET  /api/agreement              weighted kappa per action unit and level, ICC(2,1) of the RGS score
    GET  /frames/{id}.jpg, /crops/{crop}.jpg, /, /score
"""

from __future__ import annotations

from ..web import Reply, RequestError, TokenServer, page
from .background import BackgroundTrainer
from .project import Project


class LabelServer(TokenServer):
    """The server for one project; serve_forever() in the caller's thread, or start() for a background one.
    trainer: fine-tunes in the background as frames are decided (None: no training from the page)."""

    def __init__(self, project: Project, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 trainer: BackgroundTrainer | None = None):
        self.project = project
        self.trainer = trainer
        super().__init__(self._dispatch, host, port, token)

    def _dispatch(self, h: Reply, method: str, path: str, query: dict) -> None:
        project = self.project
        segments = path.strip("/").split("/")
        rater = query.get("rater", [""])[0]
        if method in ("GET", "HEAD"):
            if path == "/":
                h.html(page("rat_monitor.label", "boxes.html"))
            elif path == "/score":
                h.html(page("rat_monitor.label", "score.html"))
            elif path == "/api/frames":
                h.json(200, [_public(f) for f in project.frames()])
            elif len(segments) == 3 and segments[:2] == ["api", "frames"]:
                h.json(200, _public(project.frame(segments[2]), full=True))
            elif path == "/api/progress":
                h.json(200, project.progress())
            elif path == "/api/crops":
                h.json(200, project.blind_queue(rater))
            elif path == "/api/agreement":
                h.json(200, project.agreement())
            elif path == "/api/train":
                h.json(200, self.trainer.status() if self.trainer else {"unavailable": "this server does not train"})
            elif len(segments) == 2 and segments[0] in ("frames", "crops") and segments[1].endswith(".jpg"):
                item = segments[1][:-4]
                image = project.frame_image(item) if segments[0] == "frames" else project.crop_image(item)
                h.send(200, image.read_bytes(), "image/jpeg")
            else:
                raise RequestError(f"nothing at {path}", 404)
        elif method == "PUT":
            if len(segments) == 3 and segments[:2] == ["api", "frames"]:
                h.json(200, _public(project.save_frame(segments[2], h.body()), full=True))
                if self.trainer:
                    self.trainer.saved()
            elif len(segments) == 3 and segments[:2] == ["api", "scores"]:
                h.json(200, project.save_score(rater, segments[2], h.body()))
            else:
                raise RequestError(f"nothing to change at {path}", 404)
        elif method == "POST" and path == "/api/train":
            if not self.trainer or self.trainer.unavailable:
                raise RequestError(self.trainer.unavailable if self.trainer else "this server does not train", 409)
            if not self.trainer.start():
                raise RequestError("a fine-tune is running already", 409)
            h.json(202, self.trainer.status())
        else:
            raise RequestError(f"{method} is not offered", 405)


def _public(frame: dict, full: bool = False) -> dict:
    """What the API shows of a frame: the boxes page needs no video path or animal (labels stay unbiased)."""
    out = {"id": frame["id"], "image": f"/frames/{frame['id']}.jpg", "boxes": frame["boxes"],
           "status": frame["status"], "boxes_from": frame.get("boxes_from"), "proposals": frame["proposals"],
           "proposals_from": frame.get("proposals_from"), "rejected": len(frame["rejected"])}
    if full:
        out.update(width=frame["width"], height=frame["height"])
    return out
