/**
 * Unit tests for the table of error codes: the check of codes from a peer, and that
 * docs/protocol.md describes exactly the codes the table declares.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  cutsConnection,
  ERROR_CODES,
  isErrorCode,
  keepsConnection,
  quotesName,
} from "../lib/error_codes.ts";
import { parseError } from "../lib/protocol.ts";

Deno.test("only the table's own codes are codes", () => {
  assert.equal(isErrorCode("exists"), true);
  for (const notOne of ["toString", "__proto__", "EXISTS", "", 5, null, undefined]) {
    assert.equal(isErrorCode(notOne), false, String(notOne));
    assert.equal(parseError({ code: notOne, message: "m" }).code, "io");
  }
});

Deno.test("a refusal of the request keeps the connection; a failure that may come mid-transfer does not", () => {
  for (
    const code of [
      "exists",
      "in_progress",
      "not_found",
      "bad_name",
      "not_a_file",
      "read_only",
      "denied",
    ]
  ) {
    assert.equal(keepsConnection(code as keyof typeof ERROR_CODES), true, code);
  }
  for (const code of ["checksum", "too_large", "no_space", "busy", "timeout", "shutdown", "io"]) {
    assert.equal(keepsConnection(code as keyof typeof ERROR_CODES), false, code);
  }
  assert.deepEqual(Object.keys(ERROR_CODES).filter((code) => cutsConnection(code as "io")), [
    "timeout",
    "shutdown",
  ]);
  assert.equal(quotesName("not_found"), true);
  assert.equal(quotesName("io"), false);
});

Deno.test("docs/protocol.md lists every error code, and no other", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/protocol.md", import.meta.url));
  const section = doc.slice(doc.indexOf("## Error codes"));
  const listed = [...section.matchAll(/^\| `(\w+)`\s*\|/gm)].map((m) => m[1]);
  assert.deepEqual(listed.toSorted(), Object.keys(ERROR_CODES).toSorted());
});
