/** Tests of lib/format.ts's helpers that are not about messages. */

import assert from "node:assert/strict";
import { utf8Length } from "../lib/format.ts";

Deno.test("utf8Length counts what TextEncoder writes, lone surrogates included", () => {
  const encoder = new TextEncoder();
  const samples = ["", "abc", "naïve", "日本語", "😀", "a\ud800b", "\udc00", "x\ud83d", "€𝄞é"];
  // A fixed pseudo-random sweep over the whole UTF-16 range, surrogates and all.
  let x = 12345;
  for (let i = 0; i < 5000; i++) {
    let text = "";
    for (let k = i % 7; k > 0; k--) {
      x = (x * 1103515245 + 12345) >>> 0;
      text += String.fromCharCode(x >>> 16);
    }
    samples.push(text);
  }
  for (const text of samples) {
    assert.equal(utf8Length(text), encoder.encode(text).length, JSON.stringify(text));
  }
});
