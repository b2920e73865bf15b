/**
 * Turns of the event loop in long loops (lib/event_turns.ts): a timer set before a loop that
 * awaits nothing really pending runs before the loop ends, and a server that builds a tree
 * transfer's manifest batch slow to match against `--exclude` patterns, or compares its own names
 * with them, still serves another client meanwhile.
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

/** Patterns at the limits, each read to the end on {@link LONG} names; `x*` excludes them. */
const EXCLUDE = [...Array.from({ length: 999 }, (_, k) => `*${"a".repeat(27)}b${k}`), "x*"];

/** A name that every pattern of {@link EXCLUDE} reads to its end, the last one excluding it. */
const LONG = (i: number) => `x${String(i).padStart(4, "0")}${"a".repeat(245)}`;

/** Makes an empty file of each name in `folder`, some at a time. */
async function makeFiles(folder: string, names: string[]): Promise<void> {
  await Deno.mkdir(folder, { recursive: true });
  for (let i = 0; i < names.length; i += 256) {
    const some = names.slice(i, i + 256);
    await Promise.all(some.map((name) => Deno.writeFile(`${folder}/${name}`, new Uint8Array())));
  }
}

/**
 * Lists the server's top on the connection `small` (its handshake done), to its END, then gives
 * the event loop a turn: what `other` got before the listing is in by then.
 */
async function listMeanwhile(small: Wire): Promise<void> {
  await small.write(encodeControl(FrameType.REQUEST, { op: "list" }));
  await small.expectFrame(FrameType.OK, "list");
  for (let frame = await small.readFrame(); frame?.type !== FrameType.END;) {
    assert.equal(frame?.type, FrameType.DATA);
    frame = await small.readFrame();
  }
  await new Promise((resolve) => setTimeout(resolve, 0));
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
  // Two batches' worth of short names at least, cheap to match (shorter than any pattern but the
  // last), then a thousand long names: the batch that walks past them all, matching, awaits
  // nothing really pending meanwhile.
  const filler = 2 * MAX_BATCH_ENTRIES;
  await makeFiles(`${server.root}/big`, [
    ...Array.from({ length: filler }, (_, i) => `k${String(i).padStart(5, "0")}`),
    ...Array.from({ length: 1000 }, (_, i) => LONG(i)),
  ]);

  using tree = await Wire.connect(server);
  await tree.handshake();
  await tree.write(
    encodeControl(FrameType.REQUEST, { op: "get_tree", name: "big", exclude: EXCLUDE }),
  );
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
  await listMeanwhile(small);
  assert.equal(third?.type, undefined, "the listing waited for the slow batch");
  const frame = await reading;
  assert.equal(frame?.type, FrameType.MANIFEST);
  const sent = counts.reduce((sum, count) => sum + count, 0);
  assert.equal((frame?.json?.entries as unknown[]).length, filler - sent, "no long name was sent");
});

Deno.test("a server slow to compare its own names with --exclude still serves another client meanwhile", async () => {
  await using server = await startServer();
  // A thousand names of the server's own, excluded: put -r --delete spares them, each matched as
  // the comparison passes it on the way to the manifest's one entry, which sorts after them all.
  await makeFiles(`${server.root}/up`, Array.from({ length: 1000 }, (_, i) => LONG(i)));
  using tree = await Wire.connect(server);
  await tree.handshake();
  await tree.write(
    encodeControl(FrameType.REQUEST, {
      op: "put_tree",
      name: "up",
      delete: true,
      exclude: EXCLUDE,
    }),
  );
  await tree.expectFrame(FrameType.OK, "put_tree accepted");
  using small = await Wire.connect(server);
  await small.handshake();
  let answer: Frame | null | undefined;
  const reading = tree.readFrame().then((frame) => answer = frame);
  const entry = { path: "z", type: "dir", size: 0, mtime: 0, mode: 0o755 };
  await tree.write(encodeControl(FrameType.MANIFEST, { entries: [entry], last: true }));
  await listMeanwhile(small);
  assert.equal(answer?.type, undefined, "the listing waited for the comparison");
  const frame = await reading;
  assert.equal(frame?.type, FrameType.WANT);
  await tree.write(encodeControl(FrameType.FINISH, {}));
  await tree.expectFrame(FrameType.OK, "the transfer's summary");
  const kept = [];
  for await (const found of Deno.readDir(`${server.root}/up`)) kept.push(found.name);
  assert.equal(kept.length, 1001, "every excluded name was spared, and the folder made");
});
