/**
 * Unit tests of lib/tree_work.ts: what a busy end of a tree transfer claims as work (each file
 * from 64 KiB to its listed size, never twice over one pass; a flush under way up to its file's
 * bytes; entries removed), and the checks the other end makes of the claims (growing, covered by
 * the files listed or sent, removals within their bound, and only the kinds agreed).
 *
 * @module
 */

import assert from "node:assert/strict";
import { ProtocolError } from "../lib/errors.ts";
import type { FrameWriter } from "../lib/frame_writer.ts";
import { FrameType } from "../lib/frames.ts";
import {
  ENTRY_WORK,
  FILE_WORK,
  fileBytes,
  FLUSH_FILE_WORK,
  PeerWork,
  REMOVED_AT_MOST,
  WorkNotices,
} from "../lib/tree_work.ts";

/** A writer that keeps the control frames written to it. */
function recorder(): { out: FrameWriter; sent: Record<string, unknown>[] } {
  const sent: Record<string, unknown>[] = [];
  const out = {
    writeControl: (type: number, json: Record<string, unknown>) => {
      assert.equal(type, FrameType.KEEPALIVE);
      sent.push(json);
      return Promise.resolve();
    },
    uncork: () => Promise.resolve(),
  } as unknown as FrameWriter;
  return { out, sent };
}

Deno.test("work notices: a file counts from 64 KiB to its listed size, and only while work runs", async () => {
  const { out, sent } = recorder();
  const notices = new WorkNotices(out, 20);
  const small = notices.counter(10);
  const big = notices.counter(1 << 20);
  await notices.during(async () => {
    small(10);
    // A file that grew since it was listed is claimed up to its listed size only.
    big(512 << 10);
    big(2 << 20);
    await new Promise((resolve) => setTimeout(resolve, 60));
  });
  assert.deepEqual(sent.at(-1), { work: FILE_WORK + (1 << 20) });
  // Nothing grew, nothing is said; and nothing outside `during`.
  const before = sent.length;
  await notices.during(() => new Promise((resolve) => setTimeout(resolve, 60)));
  notices.counter(5 << 20)(5 << 20);
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(sent.length, before);
});

Deno.test("work notices: no interval, no notices (the peer did not ask)", async () => {
  const { out, sent } = recorder();
  const notices = new WorkNotices(out, undefined);
  assert.equal(await notices.during(() => Promise.resolve(7)), 7);
  assert.equal(sent.length, 0);
});

Deno.test("peer work: claims must grow and be covered by the files listed", () => {
  const grown: number[] = [];
  // The sending end: its peer hashes files already listed, each at most twice.
  const sender = new PeerWork({ ahead: 0, onWork: (n) => grown.push(n) });
  const entries = [
    { type: "dir", size: 0 },
    { type: "file", size: 10 },
    { type: "file", size: 1 << 20 },
  ];
  assert.equal(fileBytes(entries), FILE_WORK + (1 << 20));
  assert.throws(() => sender.notice({ work: 1 }), ProtocolError, "nothing listed yet");
  const listed = new PeerWork({ ahead: 0, onWork: (n) => grown.push(n) });
  listed.listed(fileBytes(entries), true);
  listed.notice({ work: 1000 });
  listed.notice({ work: 2 * fileBytes(entries) });
  assert.deepEqual(grown, [1000, 2 * fileBytes(entries) - 1000]);
  assert.throws(() => listed.notice({ work: 2 * fileBytes(entries) + 1 }), /more work/);
  for (const work of [0, 5.5, "9", -1, undefined]) {
    const peer = new PeerWork();
    assert.throws(() => peer.notice({ work }), /without growing work/, String(work));
  }
  const again = new PeerWork();
  again.notice({ work: 10 });
  assert.throws(() => again.notice({ work: 10 }), /without growing work/);
});

Deno.test("peer work: a sender's claims may run ahead of its batch, and are checked when it comes", () => {
  const receiver = new PeerWork({ ahead: 4 << 20 });
  receiver.notice({ work: 3 << 20 });
  // The batch covers them: twice its files.
  receiver.listed(fileBytes([{ type: "file", size: 2 << 20 }]), false);
  assert.throws(
    () => receiver.notice({ work: (8 << 20) + 1 }),
    /more work/,
    "past the bound ahead",
  );
  const liar = new PeerWork();
  liar.notice({ work: 10 << 20 });
  assert.throws(
    () => liar.listed(fileBytes([{ type: "file", size: 1 << 20 }]), false),
    /more work/,
  );
});

Deno.test("work notices: a receiver's flushes and removals are told only where the peer agreed", async () => {
  const { out, sent } = recorder();
  const notices = new WorkNotices(out, 20, { phases: true });
  // A small file's flush counts for 4 MiB at most, however long it runs.
  await notices.during(() =>
    notices.flushing(10, async () => {
      notices.removed(2);
      await new Promise((resolve) => setTimeout(resolve, 1200));
    })
  );
  const flushed = sent.filter((n) => n.flushed !== undefined).map((n) => n.flushed as number);
  assert.ok(flushed.length > 1, JSON.stringify(sent));
  assert.ok(flushed.every((n, i) => i === 0 || n > flushed[i - 1]), JSON.stringify(sent));
  assert.ok(flushed.at(-1)! <= FLUSH_FILE_WORK, JSON.stringify(sent));
  assert.equal(sent.filter((n) => n.removed !== undefined).at(-1)?.removed, 2);
  assert.ok(sent.every((n) => n.work === undefined), "nothing hashed, no work told");
  // Without the peer's agreement, neither is counted.
  const old = recorder();
  const quiet = new WorkNotices(old.out, 20);
  await quiet.during(() =>
    quiet.flushing(10, async () => {
      quiet.removed(2);
      await new Promise((resolve) => setTimeout(resolve, 60));
    })
  );
  assert.deepEqual(old.sent, []);
});

Deno.test("peer work: flushes within the files sent, removals within their bound, each kind growing", () => {
  const grown: number[] = [];
  const peer = new PeerWork({ ahead: 0, phases: true, onWork: (n) => grown.push(n) });
  assert.throws(() => peer.notice({ flushed: 1 }), /more flushing than the files sent/);
  const sender = new PeerWork({ ahead: 0, phases: true, onWork: (n) => grown.push(n) });
  sender.sent(10);
  sender.notice({ flushed: FLUSH_FILE_WORK });
  assert.throws(() => sender.notice({ flushed: FLUSH_FILE_WORK + 1 }), /more flushing/);
  const remover = new PeerWork({ ahead: 0, phases: true, onWork: (n) => grown.push(n) });
  remover.notice({ removed: 5 });
  // Every count it carries must grow: one that stays is no work.
  assert.throws(() => remover.notice({ removed: 6, flushed: 0 }), /without growing work/);
  assert.throws(() => remover.notice({ removed: REMOVED_AT_MOST + 1 }), /more entries removed/);
  assert.deepEqual(grown, [FLUSH_FILE_WORK, 5 * ENTRY_WORK]);
  // Not agreed: refused, whatever the count.
  const old = new PeerWork({ ahead: 0 });
  old.sent(10);
  assert.throws(() => old.notice({ flushed: 1 }), /not agreed: flushed/);
  assert.throws(() => old.notice({ removed: 1 }), /not agreed: removed/);
});

Deno.test("peer work: names reported deleted count with the entries claimed removed, against one bound", () => {
  const grown: number[] = [];
  // Reports need no agreement: every receiver sends them.
  const old = new PeerWork({ ahead: 0, onWork: (n) => grown.push(n) });
  old.deleted();
  assert.deepEqual(grown, [ENTRY_WORK]);
  const peer = new PeerWork({ ahead: 0, phases: true });
  peer.notice({ removed: REMOVED_AT_MOST - 2 });
  peer.deleted();
  peer.deleted();
  assert.throws(() => peer.deleted(), ProtocolError);
  const late = new PeerWork({ ahead: 0, phases: true });
  late.deleted();
  assert.throws(() => late.notice({ removed: REMOVED_AT_MOST }), /more entries removed or deleted/);
});
