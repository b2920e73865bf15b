/**
 * Turns of the event loop in long loops (lib/event_turns.ts): a timer set before a loop that
 * awaits nothing really pending runs before the loop ends, and a server building a tree
 * transfer's manifest batch slow to match against `--exclude` patterns still serves another
 * client meanwhile.
 *
 * @module
 */

import assert from "node:assert/strict";
import { EventTurns } from "../lib/event_turns.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { MAX_BATCH_ENTRIES } from "../lib/tree_transfer_protocol.ts";
import { type Frame, Wire } from "./wire.ts";
import { startServer } from "./harness.ts";

/** Keeps the thread busy for about `ms` milliseconds, awaiting nothing. */
function busy(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // Nothing: the loop's work.
  }
}

Deno.test("a timer set before a long loop runs before the loop ends, given turns", async () => {
  const events: string[] = [];
  setTimeout(() => events.push("timer"), 0);
  const turns = new EventTurns(5);
  for (let unit = 0; unit < 30; unit++) {
    busy(1);
    // Awaiting what is resolved already lets no timer run: only a turn does.
    await Promise.resolve();
    if (turns.due) await turns.take();
  }
  events.push("loop ended");
  assert.deepEqual(events, ["timer", "loop ended"]);
});

Deno.test("a server slow to match a batch against --exclude still serves another client meanwhile", async () => {
  await using server = await startServer();
  const big = `${server.root}/big`;
  await Deno.mkdir(big, { recursive: true });
  // Two batches' worth of short names at least, cheap to match (shorter than any pattern but the
  // last), then a thousand long names that every pattern reads to the end, the last excluding
  // them: the batch that walks past them all awaits nothing really pending meanwhile.
  const filler = 2 * MAX_BATCH_ENTRIES;
  const names = [
    ...Array.from({ length: filler }, (_, i) => `k${String(i).padStart(5, "0")}`),
    ...Array.from({ length: 1000 }, (_, i) => `x${String(i).padStart(4, "0")}${"a".repeat(245)}`),
  ];
  for (let i = 0; i < names.length; i += 256) {
    const some = names.slice(i, i + 256);
    await Promise.all(some.map((name) => Deno.writeFile(`${big}/${name}`, new Uint8Array())));
  }
  const exclude = [...Array.from({ length: 999 }, (_, k) => `*${"a".repeat(27)}b${k}`), "x*"];

  using tree = await Wire.connect(server);
  await tree.handshake();
  await tree.write(encodeControl(FrameType.REQUEST, { op: "get_tree", name: "big", exclude }));
  await tree.expectFrame(FrameType.OK, "get_tree accepted");
  const counts: number[] = [];
  const manifest = async () => {
    const json = await tree.expectFrame(FrameType.MANIFEST, `batch ${counts.length}`);
    counts.push((json.entries as unknown[]).length);
  };
  // The sender sends two batches, then one more on each answer: batch i + 2 on the answer to i.
  // Batches of short names are as full as their bytes allow, so the long names begin in batch
  // `slow` (with the last short names, if any are left for it).
  await manifest();
  await manifest();
  const slow = Math.floor(filler / counts[0]);
  for (let answered = 0; answered + 2 < slow; answered++) {
    await tree.write(encodeControl(FrameType.WANT, { want: [] }));
    await manifest();
  }
  // Another client, connected already, asks for a listing while the server builds that batch,
  // which it starts on the answer to the one two before it.
  using small = await Wire.connect(server);
  await small.handshake();
  let third: Frame | null | undefined;
  const reading = tree.readFrame().then((frame) => third = frame);
  await tree.write(encodeControl(FrameType.WANT, { want: [] }));
  await small.write(encodeControl(FrameType.REQUEST, { op: "list" }));
  await small.expectFrame(FrameType.OK, "list");
  for (let frame = await small.readFrame(); frame?.type !== FrameType.END;) {
    assert.equal(frame?.type, FrameType.DATA);
    frame = await small.readFrame();
  }
  // The batch, had it gone before the listing, would be in by now.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(third?.type, undefined, "the listing waited for the slow batch");
  const frame = await reading;
  assert.equal(frame?.type, FrameType.MANIFEST);
  const sent = counts.reduce((sum, count) => sum + count, 0);
  assert.equal((frame?.json?.entries as unknown[]).length, filler - sent, "no long name was sent");
});
