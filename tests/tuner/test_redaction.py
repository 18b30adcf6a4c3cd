"""``tuner._secrets``: every redaction helper, and the old import paths."""

from __future__ import annotations

from tuner import _secrets


def test_storage_urls_and_texts_lose_their_passwords():
    url = "postgresql+psycopg://alice:hunter2@db.example:5432/tuner"
    assert "hunter2" not in _secrets.redact(url) and "alice" in _secrets.redact(url)
    assert _secrets.redact("/just/a/path.db") == "/just/a/path.db"
    text = f"OperationalError: cannot reach {url} (timeout)"
    assert _secrets.redact_text(text) == text.replace("hunter2", "***")


def test_specs_lose_credential_values():
    spec = {"sampler": {"options": {"api_key": "sk-1", "base_url": "http://u:p@h/v1",
                                    "model": "m"}},
            "evaluator": {"options": {"hf_token": "t", "tokens": 5, "db_password": ""}},
            "list": ["https://x:y@h", "plain"]}
    out = _secrets.redact_secrets(spec)
    assert out["sampler"]["options"] == {"api_key": "***", "base_url": "http://u:***@h/v1",
                                         "model": "m"}
    assert out["evaluator"]["options"] == {"hf_token": "***", "tokens": 5, "db_password": ""}
    assert out["list"] == ["https://x:***@h", "plain"]
    assert spec["sampler"]["options"]["api_key"] == "sk-1", "a copy, not in place"


def test_endpoint_urls_keep_only_scheme_host_and_path():
    assert _secrets.redact_url("https://u:tok@api.example:8443/v1?key=abc#f") == \
        "https://api.example:8443/v1"


def test_old_names_still_import():
    from tuner import storage

    assert storage.redact_secrets is _secrets.redact_secrets
    assert storage.redact is _secrets.redact
    assert storage.SECRET_KEY_PATTERN is _secrets.SECRET_KEY_PATTERN
