"""Checks JSON answers against JSON schemas with the reference validator
(python-jsonschema), for the OpenAPI test.

Reads a JSON list of {"name", "schema", "instance"} on stdin; prints one
line per error as "name: message at /path" and exits 1 if there are any.
"""
import json
import sys

from jsonschema import Draft202012Validator

errors = []
for case in json.load(sys.stdin):
    validator = Draft202012Validator(case["schema"])
    for error in validator.iter_errors(case["instance"]):
        path = "/" + "/".join(str(part) for part in error.absolute_path)
        errors.append(f"{case['name']}: {error.message} at {path}")
print("\n".join(errors))
sys.exit(1 if errors else 0)
