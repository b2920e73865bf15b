/**
 * Serving one request on the server: put, get, list, kept and the tree requests, what each
 * failure tells the client ({@link classify}), the KEEPALIVEs while the server works, and what
 * the log line says of each.
 *
 * @module
 */

import { closeQuietly } from "./connection.ts";
import {
  ChecksumMismatchError,
  describeError,
  interruptionOf,
  isNoSpace,
  ProtocolError,
  RefusedError,
  StoreError,
} from "./errors.ts";
import { keepsConnection } from "./error_codes.ts";
import { quote } from "./remote_name.ts";
import { type Eviction, KEEP_MIN_BYTES, type KeepResult } from "./kept_uploads.ts";
import {
  encodeListing,
  type ErrorCode,
  type GetRequest,
  type ListEntry,
  type Ok,
  type PutRequest,
  type Request,
} from "./protocol.ts";
import { FrameType } from "./frames.ts";
import { CORK_LIMIT, type FrameWriter } from "./frame_writer.ts";
import { formatBytes, formatDuration } from "./format.ts";
import { RateLimiter } from "./rate_limit.ts";
import {
  checksumFilePrefix,
  localWait,
  overLimitMessage,
  receiveData,
  type ResumePoint,
  sendData,
} from "./transfer.ts";
import type { ListRequest, TreeEntry } from "./tree_protocol.ts";
import type { TreeListing } from "./tree_listing.ts";
import { createChecksum } from "./checksum.ts";
import { changeTree } from "./tree_store.ts";
import type { TreeTransferRequest } from "./tree_transfer_protocol.ts";
import { checkTreeRequest, serveTreeTransfer } from "./tree_server.ts";
import type { Channel, Context, Outcome } from "./server_context.ts";
import { keepingAlive } from "./keepalive.ts";
import { fileBytes, PeerWork } from "./tree_work.ts";
import type { Watch } from "./watchdog.ts";

/**
 * An error's text as a client may see it. Deno appends the operation and the path to an OS
 * error ("No such file or directory (os error 2): open '/srv/root/.ferry-staging/...'"); the
 * client is told the error, never where the server keeps its files.
 */
function withoutPaths(text: string): string {
  const os = /^.*?\(os error \d+\)/.exec(text);
  return (os ? os[0] : text).replace(/(['"])\/[^'"]*\1/g, "$1…$1");
}

/** Maps a failure during a request to what the client is told. */
export function classify(error: unknown): { code: ErrorCode; message: string } {
  if (error instanceof StoreError || error instanceof RefusedError) {
    return { code: error.code, message: error.message };
  }
  if (error instanceof ProtocolError) {
    const code = error instanceof ChecksumMismatchError ? "checksum" : "bad_request";
    return { code, message: error.message };
  }
  if (isNoSpace(error)) return { code: "no_space", message: "Server is out of disk space" };
  const text = describeError(error);
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return { code: "denied", message: "Server has no permission for that file" };
  }
  return { code: "io", message: `Server error: ${withoutPaths(text)}` };
}

/**
 * {@link classify} for a failure part-way through a transfer's data, after which the server hangs
 * up: never with a code that says the connection stays in step (`denied` from a file it may not
 * write or read, say), which the client would believe, sending its next request to a closed
 * socket. Such a code is sent as `io`, with its message.
 */
function classifyPartWay(error: unknown): { code: ErrorCode; message: string } {
  const { code, message } = classify(error);
  return { code: keepsConnection(code) ? "io" : code, message };
}

async function refuse(out: FrameWriter, error: unknown): Promise<Outcome> {
  const { code, message } = classify(error);
  await out.writeControl(FrameType.ERROR, { code, message });
  return { bytes: 0, result: `refused (${code}: ${message})` };
}

/** Serves one request on an established connection. */
export async function serveRequest(
  request: Request,
  channel: Channel,
  ctx: Context,
): Promise<Outcome> {
  switch (request.op) {
    case "put":
      return await servePut(request, channel, ctx);
    case "get":
      return await serveGet(request, channel, ctx);
    case "list":
      return await serveList(request, channel, ctx);
    case "kept":
      return await serveKept(channel.out, ctx);
    case "rm":
    case "mv":
    case "mkdir":
      try {
        await changeTree(ctx.store, request, { readOnly: ctx.readOnly });
      } catch (error) {
        return await refuse(channel.out, error);
      }
      await channel.out.writeControl(FrameType.OK, {});
      return { bytes: 0, result: "ok" };
    case "put_tree":
    case "get_tree":
    case "put_files":
    case "get_files":
      return await serveTree(request, channel, ctx);
  }
}

/** A whole folder in one request (lib/tree_server.ts); the log line sums it up. */
async function serveTree(
  request: TreeTransferRequest,
  channel: Channel,
  ctx: Context,
): Promise<Outcome> {
  let tree;
  try {
    tree = {
      store: ctx.store,
      pool: ctx.pool,
      readOnly: ctx.readOnly,
      maxSize: ctx.maxSize,
      minRate: ctx.minRate,
    };
    await checkTreeRequest(request, tree);
  } catch (error) {
    return await refuse(channel.out, error);
  }
  await channel.out.writeControl(FrameType.OK, {});
  const { watch } = channel.entry;
  // A tree or files sent to the server is an upload: its bytes must come at the minimum rate,
  // as a single put's data must (the server's own disk waits do not count).
  const upload = request.op === "put_tree" || request.op === "put_files";
  if (upload) watch.receiving();
  try {
    const done = await serveTreeTransfer(
      request,
      {
        ...channel,
        local: watch.localWaits,
        // Work notices go to a client that asked for KEEPALIVE; its own are checked by the watch.
        noticeMs: channel.keepaliveMs,
        peerWork: (grown) => watch.peerWork(grown),
      },
      tree,
    ).finally(() => upload && watch.working());
    // The bytes that moved: what a resume continued from was not sent again.
    const resumed = done.resumed ? `, ${done.resumed} bytes resumed` : "";
    return {
      bytes: done.bytes - (done.resumed ?? 0),
      result: `ok ${done.files} files, ${done.skipped} skipped, ${done.deleted} deleted, ` +
        `${done.failed} failed${resumed}` +
        (done.unrelated ? `, ${done.unrelated} kept (no name in common)` : "") +
        (request.dryRun ? " (dry run)" : ""),
    };
  } catch (error) {
    if (channel.entry.reason) {
      return { bytes: 0, result: `cut (${channel.entry.reason})`, close: true };
    }
    const gone = interruptionOf(error);
    if (gone) return { bytes: 0, result: `interrupted (client went away: ${gone})`, close: true };
    const { code, message } = classify(error);
    await channel.out.writeControl(FrameType.ERROR, { code, message }).catch(() => {});
    return { bytes: 0, result: `failed (${code}: ${message})`, close: true };
  }
}

/**
 * Runs `work`, sending KEEPALIVE every `channel.keepaliveMs` meanwhile if the client asked for
 * it. Resolves only after the last KEEPALIVE is written, so no frame can interleave with what
 * follows.
 */
function whileKeepingAlive<T>(channel: Channel, work: () => Promise<T>): Promise<T> {
  return keepingAlive(channel.out, channel.keepaliveMs, () => ({}), work);
}

async function servePut(request: PutRequest, channel: Channel, ctx: Context): Promise<Outcome> {
  const { frames, out, entry } = channel;
  const { name, size, overwrite } = request;
  let upload;
  try {
    if (ctx.readOnly) throw new StoreError("read_only", "Server is read-only: uploads are refused");
    if (ctx.maxSize !== undefined && size !== null && size > ctx.maxSize) {
      throw new StoreError("too_large", overLimitMessage(ctx.maxSize, size));
    }
    upload = await ctx.store.beginUpload(name, { overwrite, resume: request.resume, size });
  } catch (error) {
    return await refuse(out, error);
  }
  let received = 0;
  try {
    let resumeFrom: ResumePoint | undefined;
    // Offset 0 says that what was kept for this name was dropped: the client says so.
    let accept: Ok = upload.keptDropped ? { offset: 0 } : {};
    if (upload.offset > 0) {
      // Hashing a big kept part takes time: the server's own, not the client's idleness, and the
      // client hears that the server is at it.
      const checksum = await whileKeepingAlive(channel, () =>
        localWait(
          entry.watch.localWaits,
          () => checksumFilePrefix(upload.file, upload.offset, { pool: ctx.pool }),
        ));
      if (checksum) {
        resumeFrom = { size: upload.offset, checksum };
        accept = { offset: upload.offset, prefix: (await checksum.fork()).digest() };
      }
    }
    await out.writeControl(FrameType.OK, accept);
    // The data must now arrive at the minimum rate; the server's own disk waits do not count.
    entry.watch.receiving();
    const result = await receiveData(frames, upload, {
      pool: ctx.pool,
      sizeHint: size,
      maxSize: ctx.maxSize,
      announcedSize: size,
      resumeFrom,
      onNotice: resumeFrom && resumeWork(resumeFrom.size, entry.watch),
      onProgress: (bytes) => received = bytes,
      localWaits: entry.watch.localWaits,
    }).finally(() => entry.watch.working());
    // The final flush can take seconds: the client hears that the server is still at it.
    try {
      await whileKeepingAlive(channel, () => upload.commit(result));
    } catch (error) {
      // Every byte and the END are in, so the connection is in step: a refusal of the name takes
      // the place of the final OK (taken meanwhile, a folder appeared there, no permission) and
      // the next request may follow, as after a refusal before the data. Any other failure (a
      // full disk, say) ends the connection, as it always has.
      if (entry.reason || interruptionOf(error) || !keepsConnection(classify(error).code)) {
        throw error;
      }
      await upload.discard();
      return { ...(await refuse(out, error)), bytes: result.size };
    }
    await out.writeControl(FrameType.OK, result);
    const resumed = resumeFrom ? ` (resumed from ${resumeFrom.size})` : "";
    return { bytes: result.size, result: `ok ${result.checksum}${resumed}` };
  } catch (error) {
    if (error instanceof RefusedError) {
      // The client gave up cleanly with ABORT; the connection is still in step.
      await upload.discard();
      return { bytes: received, result: `aborted by client (${error.message})` };
    }
    if (entry.reason) {
      // The server cut it (idle, shutting down) and has told the client why: nothing is kept.
      await upload.discard();
      return { bytes: received, result: `cut (${entry.reason})`, close: true, cut: true };
    }
    const gone = interruptionOf(error);
    if (gone) {
      const why = `client went away: ${gone}`;
      // What arrived before the client left is good: keep it for put --resume, unless it is too
      // little to matter or the size is unknown (a stream, which no resume could continue).
      if (size !== null && received >= KEEP_MIN_BYTES) {
        const kept = await upload.keep().catch((error) => new Error(describeError(error)));
        return {
          bytes: received,
          result: `interrupted, ${keptOrNot(kept, why, ctx)}`,
          close: true,
        };
      }
      await upload.discard();
      return { bytes: received, result: `interrupted, discarded (${why})`, close: true };
    }
    await upload.discard();
    const { code, message } = classifyPartWay(error);
    await out.writeControl(FrameType.ERROR, { code, message }).catch(() => {});
    return { bytes: received, result: `failed (${code}: ${message})`, close: true };
  }
}

/**
 * A resumed put's work notices, before its first DATA (feature `put-resume-work`): the client
 * hashes its first `offset` bytes once, so its claims may never pass their work (lib/tree_work.ts),
 * and their growth counts for the watch as data does (`Watch.peerWork`, at the minimum rate). A
 * client cannot hold the connection longer than hashing that start at the minimum rate takes.
 */
function resumeWork(offset: number, watch: Watch) {
  const peer = new PeerWork({ ahead: 0, times: 1, onWork: (grown) => watch.peerWork(grown) });
  peer.listed(fileBytes([{ type: "file", size: offset }]), true);
  return (json: Record<string, unknown>) => peer.notice(json);
}

async function serveGet(request: GetRequest, channel: Channel, ctx: Context): Promise<Outcome> {
  const { out, entry } = channel;
  let opened;
  try {
    opened = await ctx.store.openFile(request.name);
  } catch (error) {
    return await refuse(out, error);
  }
  // Counted from the start of the file, as the END frame counts; the log says what moved.
  let sent = 0;
  let skipped = 0;
  try {
    let resumeFrom: ResumePoint | undefined;
    const { offset, prefix } = request;
    if (offset && prefix && offset <= opened.size) {
      // As for a resumed put: the server's own work, which the client hears of if it asked.
      const checksum = await whileKeepingAlive(channel, () =>
        localWait(
          entry.watch.localWaits,
          () => checksumFilePrefix(opened.file, offset, { pool: ctx.pool }),
        ));
      if (checksum && (await checksum.fork()).digest() === prefix) {
        resumeFrom = { size: offset, checksum };
      }
    }
    // A prefix that does not match starts the download over, from byte 0.
    skipped = resumeFrom?.size ?? 0;
    sent = skipped;
    await opened.file.seek(skipped, Deno.SeekMode.Start);
    // The client's rate limit, if it has one: its bytes leave as it takes them, in small
    // frames, so neither side's idle timeout waits on megabytes stuck in the kernel's buffers.
    // Never slower than the least rate an upload must keep: a client asking for less reads at
    // its own pace beyond it, as one without a rate does, and meets the idle timeout the same
    // way; otherwise a request for a byte a second would keep the server busy for ever.
    const pacer = request.rate ? new RateLimiter(Math.max(request.rate, ctx.minRate)) : undefined;
    // A small file's OK, DATA and END leave together (see FrameWriter.cork); a paced one's not.
    if (!pacer && opened.size - (resumeFrom?.size ?? 0) <= CORK_LIMIT) out.cork();
    await out.writeControl(FrameType.OK, {
      size: opened.size,
      mtime: opened.mtime,
      offset: resumeFrom?.size ?? 0,
    });
    const result = await sendData(opened.file, out, {
      pool: ctx.pool,
      sizeHint: opened.size - (resumeFrom?.size ?? 0),
      resumeFrom,
      // The sender hashes every byte: the stored checksum, if any, is checked on that one pass.
      check: opened.file.takeCheck?.(),
      onProgress: (bytes) => sent = bytes,
      throttle: pacer && ((bytes) => pacer.take(bytes)),
      maxChunk: pacer?.chunkSize,
    });
    const resumed = resumeFrom ? ` (resumed from ${resumeFrom.size})` : "";
    return { bytes: result.size - skipped, result: `ok ${result.checksum}${resumed}` };
  } catch (error) {
    const bytes = sent - skipped;
    if (entry.reason) return { bytes, result: `cut (${entry.reason})`, close: true, cut: true };
    const gone = interruptionOf(error);
    if (gone) return { bytes, result: `interrupted (client went away: ${gone})`, close: true };
    const { code, message } = classifyPartWay(error);
    await out.writeControl(FrameType.ABORT, { code, message }).catch(() => {});
    return { bytes, result: `failed (${code}: ${message})`, close: true };
  } finally {
    // The stream may have closed the file already, at its end.
    closeQuietly(opened.file);
  }
}

/** What became of an interrupted upload the server tried to keep, for the log. */
function keptOrNot(kept: KeepResult | Error, why: string, ctx: Context): string {
  if (kept instanceof Error) return `discarded (${why}): could not keep it: ${kept.message}`;
  if (kept.kept) {
    return `kept for resume (${why}), until ${new Date(kept.expiresAt).toISOString()}`;
  }
  return kept.reason === "off"
    ? `discarded (${why}): keeping is off`
    : `discarded (${why}): over the keep budget of ${formatBytes(ctx.store.kept.budget)}`;
}

/** One log line's text for a kept upload removed. */
export function describeEviction(eviction: Eviction, bounds: { budget: number; maxAgeMs: number }) {
  const why = {
    budget: `over the keep budget of ${formatBytes(bounds.budget)}`,
    off: "keeping is off",
    expired: `expired after ${formatDuration(bounds.maxAgeMs)}`,
    room: `the disk is full and ${quote(eviction.forName ?? "")} needs the space`,
    replaced: "a new upload of the name started over",
  }[eviction.reason];
  return `evicted kept upload ${quote(eviction.name)} ${eviction.bytes} bytes: ${why}`;
}

async function serveKept(out: FrameWriter, ctx: Context): Promise<Outcome> {
  let listing: Uint8Array;
  try {
    if (!ctx.showKept) {
      throw new StoreError(
        "denied",
        "This server does not show its kept uploads (its operator can allow it with --show-kept)",
      );
    }
    listing = encodeListing(await ctx.store.kept.list());
  } catch (error) {
    return await refuse(out, error);
  }
  return await sendListing(listing, out, ctx);
}

/**
 * Sends a listing as it is walked (lib/tree_listing.ts), never whole: a typed one as a line of
 * JSON per entry (`stream`) or as a JSON array, the original one (a request without
 * `recursive`, from a client that predates folders) as a JSON array of its files. An array is
 * written piece by piece too: its bytes are what they always were, and only OK's `size`, which
 * would need the whole listing first, is gone. A typed one asked for `namesOnly` gives each entry
 * its name and type alone, whatever the store found.
 */
async function serveList(request: ListRequest, channel: Channel, ctx: Context): Promise<Outcome> {
  const { out, entry } = channel;
  const { dir, recursive } = request;
  const typed = recursive !== undefined;
  const stream = typed && request.stream === true;
  const namesOnly = typed && request.namesOnly === true;
  let listing: TreeListing;
  try {
    listing = await ctx.store.listTree(
      !typed
        ? { recursive: true, folderTimes: false }
        : namesOnly
        ? { dir, recursive, namesOnly, folderTimes: false }
        : { dir, recursive },
    );
  } catch (error) {
    return await refuse(out, error);
  }
  let sent = 0;
  let count = 0;
  try {
    // A small listing's OK, DATA and END leave in one write; a large one's flows as it grows.
    out.cork();
    await out.writeControl(FrameType.OK, stream ? { stream: true } : {});
    const checksum = await createChecksum();
    let pending = stream ? "" : "[";
    const flush = async () => {
      const bytes = encoder.encode(pending);
      pending = "";
      if (bytes.length === 0) return;
      checksum.update(bytes);
      await out.writeData(bytes);
      sent += bytes.length;
    };
    for await (const batch of listing) {
      for (const listed of batch) {
        if (!typed && listed.type !== "file") continue;
        const json = JSON.stringify(
          namesOnly ? nameEntry(listed) : typed ? listed : flatEntry(listed),
        );
        pending += stream ? json + "\n" : (count === 0 ? json : "," + json);
        count++;
      }
      if (pending.length >= LISTING_PIECE) await flush();
    }
    if (!stream) pending += "]";
    await flush();
    await out.writeControl(FrameType.END, { size: sent, checksum: checksum.digest() });
    await out.uncork();
    return { bytes: sent, result: `ok ${count} entries` };
  } catch (error) {
    if (entry.reason) return { bytes: sent, result: `cut (${entry.reason})`, close: true };
    const gone = interruptionOf(error);
    if (gone) {
      return { bytes: sent, result: `interrupted (client went away: ${gone})`, close: true };
    }
    // Part-way through the data: the client hears why, and the connection ends.
    const { code, message } = classifyPartWay(error);
    await out.writeControl(FrameType.ABORT, { code, message }).catch(() => {});
    await out.uncork().catch(() => {});
    return { bytes: sent, result: `failed (${code}: ${message})`, close: true };
  }
}

/** Characters of a listing gathered before they go out as one DATA frame. */
const LISTING_PIECE = 64 << 10;

const encoder = new TextEncoder();

/** A file of the original listing: no type (every entry is a file). */
function flatEntry(file: TreeEntry): ListEntry {
  const { type: _, ...entry } = file;
  return entry;
}

/** An entry of a names-only listing: its name and type (and whether it is not UTF-8). */
function nameEntry(listed: TreeEntry): Pick<TreeEntry, "name" | "type" | "notUtf8"> {
  return listed.notUtf8
    ? { name: listed.name, type: listed.type, notUtf8: true }
    : { name: listed.name, type: listed.type };
}

/** Sends an encoded listing as OK and a data phase. */
async function sendListing(listing: Uint8Array, out: FrameWriter, ctx: Context): Promise<Outcome> {
  if (listing.length <= CORK_LIMIT) out.cork();
  await out.writeControl(FrameType.OK, { size: listing.length });
  const result = await sendData(new Blob([listing as Uint8Array<ArrayBuffer>]).stream(), out, {
    pool: ctx.pool,
    sizeHint: listing.length,
  });
  return { bytes: result.size, result: "ok" };
}
