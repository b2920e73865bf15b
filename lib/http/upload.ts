/**
 * HTTP uploads: a PUT's body becomes a file through the store's staged upload (lib/file_store.ts
 * beginUpload, Upload.write, commit), checked for its length and any digest sent, resumed from a
 * kept interrupted upload with `Content-Range`, and stopped when the client goes quiet or away.
 *
 * @module
 */

import { alignedBuffer, TRANSFER_BUFFER_SIZE } from "../buffer_pool.ts";
import { describeError, StoreError } from "../errors.ts";
import type { Upload } from "../file_upload.ts";
import { quote } from "../remote_name.ts";
import { overLimitMessage } from "../transfer.ts";
import { parseContentRange } from "./conditional.ts";
import { type DigestCheck, parseDigestField, startDigestCheck } from "./digest.ts";
import {
  type Call,
  type Exchange,
  type HandlerContext,
  HttpError,
  HttpInterruption,
  statusOf,
} from "./handler.ts";
import { IdleTimer } from "../idle_timer.ts";

/** Size of each read from a kept upload's staging file. */
const READ_CHUNK = 1 << 20;

/** A cut upload shorter than this is not worth keeping for a resume (as for ferry put). */
const KEEP_MIN_BYTES = 1 << 20;

function tooLarge(size: number, limit: number): StoreError {
  return new StoreError("too_large", overLimitMessage(limit, size));
}

/**
 * Serves PUT: the body becomes the file `target.name`, staged and renamed into place only once it
 * has all arrived, its length matches and any digest sent matches. `?overwrite` or `If-Match: *`
 * replaces an existing file; `If-None-Match: *` (the default anyway) answers 412 when it exists.
 * A `Content-Range: bytes N-LAST/SIZE` continues an interrupted upload kept at offset N.
 */
export async function serveWrite(call: Call): Promise<Response> {
  const { request, url, target, ctx, exchange } = call;
  exchange.name = target.name || "/";
  if (ctx.readOnly) throw new StoreError("read_only", "Server is read-only: uploads are refused");
  if (target.folder || target.name === "") {
    throw new HttpError(
      400,
      "PUT needs a file name: curl -T FILE http://HOST:PORT/folder/ adds it for you",
    );
  }
  let partial;
  try {
    partial = parseContentRange(request.headers.get("content-range"));
  } catch (error) {
    throw new HttpError(400, describeError(error));
  }
  const lengthField = request.headers.get("content-length");
  const length = lengthField === null ? null : Number(lengthField);
  if (length !== null && !Number.isSafeInteger(length)) {
    throw new HttpError(400, "Bad Content-Length");
  }
  if (partial && length !== null && length !== partial.end - partial.start) {
    throw new HttpError(400, "Content-Length does not match Content-Range");
  }
  if (partial && partial.end !== partial.size) {
    throw new HttpError(400, "A resumed upload must send the rest of the file, to its end");
  }
  // The whole file's size, when known: the resume key, and what --max-size judges.
  const size = partial ? partial.size : length;
  if (ctx.maxSize !== undefined && size !== null && size > ctx.maxSize) {
    throw tooLarge(size, ctx.maxSize);
  }
  const contentDigest = parseDigestField("Content-Digest", request.headers.get("content-digest"));
  const reprDigest = parseDigestField("Repr-Digest", request.headers.get("repr-digest"));
  const ifNoneMatch = request.headers.get("if-none-match")?.trim();
  const ifMatch = request.headers.get("if-match")?.trim();
  if (ifMatch !== undefined && ifMatch !== "*") {
    throw new HttpError(
      501,
      "Only If-Match: * is supported (replace an existing file); use ?overwrite otherwise",
    );
  }
  const overwrite = ifNoneMatch !== "*" && (url.searchParams.has("overwrite") || ifMatch === "*");
  if (ifMatch === "*") {
    // Replace only what exists: the store resolves it (a folder or a missing file is refused).
    await ctx.store.resolveFile(target.name).catch((error) => {
      if (error instanceof StoreError && error.code === "not_found") {
        throw new HttpError(412, `If-Match: * but there is no file ${quote(target.name)}`);
      }
      throw error;
    });
  }
  let upload: Upload;
  try {
    upload = await ctx.store.beginUpload(target.name, {
      overwrite,
      resume: partial !== null,
      size,
    });
  } catch (error) {
    if (error instanceof StoreError && error.code === "exists" && ifNoneMatch === "*") {
      throw new HttpError(412, error.message);
    }
    if (error instanceof StoreError && error.code === "exists") {
      throw new StoreError("exists", `${error.message} (add ?overwrite to replace it)`);
    }
    throw error;
  }
  const startAt = partial?.start ?? 0;
  if (upload.offset !== startAt) {
    // Nothing kept at that offset: put back what is kept (if anything) and say where it stands.
    const offset = upload.offset;
    if (offset > 0) await upload.keep().catch(() => {});
    else await upload.discard();
    throw new HttpError(
      416,
      `Cannot resume at ${startAt}: the server holds ${offset} bytes of ${quote(target.name)}`,
      { "upload-offset": String(offset) },
    );
  }
  let received = 0;
  try {
    const content = contentDigest ? await startDigestCheck(contentDigest) : null;
    const repr = reprDigest ? await startDigestCheck(reprDigest) : null;
    if (repr && upload.offset > 0) await hashPrefix(upload.file, upload.offset, repr);
    if (!request.body) throw new HttpError(400, "PUT without a body");
    await readBody(request.body, ctx, exchange, async (batch) => {
      const total = upload.offset + received + batch.length;
      if (ctx.maxSize !== undefined && total > ctx.maxSize) throw tooLarge(total, ctx.maxSize);
      if (size !== null && total > size) {
        throw new HttpError(400, "More bytes arrived than Content-Length announced");
      }
      content?.update(batch);
      repr?.update(batch);
      await upload.write(batch);
      received += batch.length;
      exchange.bytes = received;
    });
    if (size !== null && upload.offset + received !== size) {
      throw new HttpInterruption(`${upload.offset + received} of ${size} bytes arrived`);
    }
    content?.verify();
    repr?.verify();
    await upload.commit();
    const total = upload.offset + received;
    const resumed = upload.offset > 0 ? ` (resumed from ${upload.offset})` : "";
    exchange.result = `ok${resumed}`;
    return new Response(`Stored ${quote(target.name)}: ${total} bytes${resumed}\n`, {
      status: 201,
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  } catch (error) {
    exchange.bytes = received;
    const interrupted = error instanceof HttpInterruption;
    if (
      interrupted && !exchange.cut.signal.aborted && size !== null &&
      upload.offset + received >= KEEP_MIN_BYTES
    ) {
      // What arrived before the client left is good: keep it for a resume, as ferry put does.
      const kept = await upload.keep().catch(() => null);
      exchange.result = kept?.kept
        ? `interrupted, kept for resume at ${upload.offset + received} (${error.message})`
        : `interrupted, discarded (${error.message})`;
    } else {
      await upload.discard();
      exchange.result = interrupted
        ? `interrupted, discarded (${error.message})`
        : `refused (${statusOf(error).message})`;
    }
    throw error;
  }
}

/** Hashes the first `bytes` of a resumed upload's staging file into `check`. */
async function hashPrefix(
  file: Pick<Deno.FsFile, "read" | "seek">,
  bytes: number,
  check: DigestCheck,
): Promise<void> {
  await file.seek(0, Deno.SeekMode.Start);
  const buffer = new Uint8Array(READ_CHUNK);
  let left = bytes;
  while (left > 0) {
    const n = await file.read(buffer.subarray(0, Math.min(buffer.length, left)));
    if (n === null) throw new Error("Kept upload is shorter than recorded");
    check.update(buffer.subarray(0, n));
    left -= n;
  }
  await file.seek(bytes, Deno.SeekMode.Start);
}

/**
 * Bytes of a request body gathered before each write to the staging file. The body arrives in
 * pieces of up to {@link BODY_PIECE}; writing each one went to Deno's file thread and back 16 384
 * times per GiB, which cost far more than the copy that gathers them.
 */
const WRITE_BATCH = TRANSFER_BUFFER_SIZE;

/**
 * The most Deno hands over of a request body at a time. A shorter piece means the socket had no
 * more for now: what is gathered is written then, so a trickling client's bytes reach the staging
 * file as they come. Only a client that pauses right after a full piece leaves bytes waiting (less
 * than a batch), and those are written before a cut upload is kept.
 */
const BODY_PIECE = 64 * 1024;

/**
 * Reads a request body and hands it on in batches of up to {@link WRITE_BATCH} bytes (less when
 * the body pauses), one buffer reused: `onBatch` must be done with it when its promise resolves. A body that stops for
 * the idle timeout, a client that goes away and a server cut all end it with
 * {@link HttpInterruption}, once what arrived before has been handed on.
 */
async function readBody(
  body: ReadableStream<Uint8Array>,
  ctx: HandlerContext,
  exchange: Exchange,
  onBatch: (batch: Uint8Array) => Promise<void>,
): Promise<void> {
  const reader = body.getReader();
  // Why the body was stopped, if the server stopped it. (Not a race of each read against one
  // long-lived promise: every race would hang a reaction, and its chunk, on that promise.)
  let stopped: HttpInterruption | undefined;
  const stop = (why: HttpInterruption) => {
    stopped ??= why;
    reader.cancel(why).catch(() => {});
  };
  const idle = new IdleTimer(
    ctx.idleTimeoutMs,
    () => stop(new HttpInterruption(`idle for ${ctx.idleTimeoutMs / 1000} s`)),
  );
  const onCut = () =>
    stop(new HttpInterruption(String(exchange.cut.signal.reason ?? "server cut")));
  exchange.cut.signal.addEventListener("abort", onCut, { once: true });
  // Page-aligned: the kernel copies out of it into the page cache at full speed.
  const batch = new Uint8Array(alignedBuffer(WRITE_BATCH));
  let filled = 0;
  const flush = async () => {
    if (filled === 0) return;
    const bytes = batch.subarray(0, filled);
    filled = 0;
    await onBatch(bytes);
  };
  try {
    while (true) {
      let step: ReadableStreamReadResult<Uint8Array>;
      try {
        step = await reader.read();
      } catch (error) {
        await flush();
        throw stopped ?? new HttpInterruption(`client went away: ${describeError(error)}`);
      }
      if (stopped) {
        await flush();
        throw stopped;
      }
      if (step.done) break;
      idle.touch();
      let chunk = step.value;
      const caughtUp = chunk.length < BODY_PIECE;
      while (chunk.length > 0) {
        const n = Math.min(chunk.length, batch.length - filled);
        batch.set(n === chunk.length ? chunk : chunk.subarray(0, n), filled);
        filled += n;
        chunk = chunk.subarray(n);
        if (filled === batch.length) await flush();
      }
      if (caughtUp) await flush();
    }
    await flush();
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  } finally {
    idle.stop();
    exchange.cut.signal.removeEventListener("abort", onCut);
  }
}
