/**
 * One connection on the server, from its first byte to its close: telling ferry from the seed
 * protocol, TLS or noise, the handshake (preamble, HELLO/WELCOME, the token's challenge), then
 * its requests one after another, one log line each; and refusing a client over a connection
 * limit with a reason it can read.
 *
 * @module
 */

import { closeQuietly, formatAddr, TLS_HANDSHAKE_RECORD } from "./connection.ts";
import { describeError, ProtocolError } from "./errors.ts";
import { quote } from "./remote_name.ts";
import { parseAuth, parseHello, parseRequest, PUT_RESUME_WORK_FEATURE } from "./protocol.ts";
import {
  encodePreamble,
  FrameType,
  frameTypeName,
  PROTOCOL_VERSION,
  startsPreamble,
} from "./frames.ts";
import { FrameReader } from "./frame_reader.ts";
import { FrameWriter } from "./frame_writer.ts";
import { authMac, macMatches, newNonce } from "./auth.ts";
import type { Refusal } from "./admission.ts";
import { looksLikeLegacy, serveLegacy } from "./legacy.ts";
import { NAME, VERSION } from "./version.ts";
import { LIST_NAMES_FEATURE, TREE_FEATURE } from "./tree_protocol.ts";
import { TREE_EXCLUDE_FEATURE, TREE_RESUME_FEATURE } from "./tree_transfer_protocol.ts";
import { PHASE_WORK_FEATURE } from "./tree_work.ts";
import { type Channel, type Context, stamp, type Tracked } from "./server_context.ts";
import { classify, serveRequest } from "./server_requests.ts";

/** What a connection refused at the door is told, and the log says. */
function busyMessage(refusal: Refusal): { message: string; log: string } {
  if (refusal.reason === "full") {
    return {
      message: `Server busy: all ${refusal.limit} connections in use, try again later`,
      log: `busy (${refusal.limit} connections)`,
    };
  }
  return {
    message: `Server busy: too many connections from your address (limit ${refusal.limit}), ` +
      "try again later",
    log: `busy (limit of ${refusal.limit} per address reached by ${refusal.key})`,
  };
}

/** Tells a client over a connection limit that the server is busy, and hangs up. */
export async function refuseBusy(conn: Deno.Conn, refusal: Refusal, ctx: Context): Promise<void> {
  const peer = formatAddr(conn.remoteAddr);
  const { message, log } = busyMessage(refusal);
  // Logged first: with TLS the writes wait for a handshake the client may never make.
  ctx.log(`${stamp()} ${peer} refused: ${log}`);
  const timer = setTimeout(() => closeQuietly(conn), REFUSAL_LINGER_MS);
  try {
    const out = new FrameWriter(conn.writable, { direct: conn });
    await out.writeRaw(encodePreamble(PROTOCOL_VERSION));
    await out.writeControl(FrameType.ERROR, { code: "busy", message });
    // Read the client's greeting before closing: closing with it unread would reset the
    // connection, and the client would see a broken pipe instead of the reason.
    await conn.closeWrite();
    await new FrameReader(conn).discardAll();
  } catch {
    // The client left first.
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

/** How long a refused client may take to finish sending its greeting before it is closed. */
const REFUSAL_LINGER_MS = 2000;

/** Serves one admitted connection until it closes, is cut, or breaks the protocol. */
export async function handleConnection(entry: Tracked, ctx: Context): Promise<void> {
  const { conn, watch } = entry;
  const { activity } = watch;
  const peer = formatAddr(conn.remoteAddr);
  const frames = new FrameReader(conn, { activity });
  // The socket itself too: see FrameWriterOptions.direct.
  const out = new FrameWriter(conn.writable, { activity, direct: conn });
  const channel: Channel = { frames, out, peer, entry, preambleSent: false };
  // Whether a request's log line already said why the server cut the connection.
  let cutLogged = false;
  try {
    // With TLS, this read waits for the TLS handshake too: the watchdog's deadline covers it.
    const first = await frames.readSome(new Uint8Array(1));
    if (!first) return;
    if (!startsPreamble(first[0])) {
      await serveForeign(first, channel, ctx);
      return;
    }
    // A client that has begun the ferry preamble can read an ERROR frame after ours.
    entry.tell = (error) => {
      // The ERROR waits for a DATA frame part-way out, and a reader that takes nothing would
      // hold it forever: close after a second either way.
      setTimeout(() => closeQuietly(conn), 1000);
      const preamble = channel.preambleSent ? undefined : encodePreamble(PROTOCOL_VERSION);
      channel.preambleSent = true;
      (async () => {
        if (preamble) await out.writeRaw(preamble);
        await out.writeControl(FrameType.ERROR, error);
        // Half-close only: the handler goes on draining what the client sends until the close,
        // so the client reads why rather than a connection reset.
        await conn.closeWrite();
      })().catch(() => closeQuietly(conn));
    };
    if (!await handshake(first, channel, ctx) || entry.reason) return;
    if (!ctx.admission!.establish(entry.ticket)) {
      // Every established slot filled while this one was in its handshake.
      const limit = ctx.admission!.limits.maxConnections;
      const { message, log } = busyMessage({ reason: "full", limit });
      ctx.log(`${stamp()} ${peer} refused: ${log}`);
      await out.writeControl(FrameType.ERROR, { code: "busy", message });
      await drainAndClose(conn, frames);
      return;
    }
    while (true) {
      watch.waiting();
      const frame = await frames.readControl();
      watch.working();
      if (!frame || entry.reason) return;
      if (frame.type !== FrameType.REQUEST) {
        throw new ProtocolError(`Expected REQUEST, got ${frameTypeName(frame.type)}`);
      }
      const request = parseRequest(frame.json);
      const started = performance.now();
      const outcome = await serveRequest(request, channel, ctx);
      const seconds = ((performance.now() - started) / 1000).toFixed(3);
      const name = request.op === "list"
        ? (request.dir === undefined ? "-" : quote(request.dir))
        : request.op === "mv"
        ? `${quote(request.name)} -> ${quote(request.to)}`
        : "name" in request && request.name !== undefined
        ? quote(request.name)
        : "-";
      ctx.log(
        `${stamp()} ${peer} ${request.op} ${name} ${outcome.bytes} bytes ${outcome.result} ${seconds}s`,
      );
      cutLogged = outcome.cut === true;
      if (outcome.close) {
        await drainAndClose(conn, frames);
        return;
      }
    }
  } catch (error) {
    // A connection the server cut fails whatever it was doing; the reason is logged below.
    if (entry.reason) return;
    ctx.log(`${stamp()} ${peer} connection error: ${describeError(error)}`);
    if (error instanceof ProtocolError) {
      const { code, message } = classify(error);
      await out.writeControl(FrameType.ERROR, { code, message }).catch(() => {});
    }
  } finally {
    closeQuietly(conn);
    if (entry.reason && !cutLogged) ctx.log(`${stamp()} ${peer} closed: ${entry.reason}`);
  }
}

/** A connection that did not open with ferry's preamble: the seed protocol, TLS, or noise. */
async function serveForeign(first: Uint8Array, channel: Channel, ctx: Context): Promise<void> {
  const { frames, out, peer, entry } = channel;
  if (ctx.legacy && looksLikeLegacy(first[0])) {
    const started = performance.now();
    // The socket too: a seed upload must not let it close before the file is stored.
    const legacyConn = {
      frames,
      out,
      conn: entry.conn,
      watch: entry.watch,
      admit: () => ctx.admission!.establish(entry.ticket),
    };
    const outcome = await serveLegacy(first, legacyConn, ctx);
    const seconds = ((performance.now() - started) / 1000).toFixed(3);
    const what = outcome.request
      ? `${outcome.request.op} ${outcome.request.name ? quote(outcome.request.name) : "-"}`
      : "?";
    ctx.log(`${stamp()} ${peer} seed ${what} ${outcome.bytes} bytes ${outcome.result} ${seconds}s`);
    return;
  }
  if (first[0] === TLS_HANDSHAKE_RECORD) {
    ctx.log(`${stamp()} ${peer} refused: TLS client, but this server does not use TLS`);
    return;
  }
  // The seed's clients open with a text request line; tell them no in their own words.
  await out.writeRaw(new TextEncoder().encode("cancel")).catch(() => {});
  ctx.log(`${stamp()} ${peer} refused: not the ferry protocol (seed request without --legacy?)`);
}

/**
 * Completes the preamble, HELLO/WELCOME and, when a token is set, the challenge-response.
 * Returns false when the client was refused (and told why).
 */
async function handshake(first: Uint8Array, channel: Channel, ctx: Context): Promise<boolean> {
  const { frames, out, peer, entry } = channel;
  const version = await frames.readPreamble(first);
  if (version < 1) throw new ProtocolError(`Unsupported protocol version ${version}`);
  const hello = await frames.readControl();
  // Cut meanwhile (the deadline, an eviction): it has been told, and nothing else is sent.
  if (entry.reason) return false;
  if (!hello || hello.type !== FrameType.HELLO) {
    throw new ProtocolError("Expected HELLO after the preamble");
  }
  channel.keepaliveMs = parseHello(hello.json).keepalive;
  channel.preambleSent = true;
  await out.writeRaw(encodePreamble(Math.min(version, PROTOCOL_VERSION)));
  const challenge = ctx.token ? newNonce() : undefined;
  const features = [
    ctx.token ? "auth" : "",
    ctx.readOnly ? "read-only" : "",
    // Every store has folders (an S3 store's are key prefixes: lib/s3_tree.ts).
    TREE_FEATURE,
    // Every store can leave out sizes: the answer's shape is made in lib/server_requests.ts.
    LIST_NAMES_FEATURE,
    ctx.store.treeResume ? TREE_RESUME_FEATURE : "",
    // Its tree transfers tell of, and take, a receiver's flushes and removals (lib/tree_work.ts).
    PHASE_WORK_FEATURE,
    // A resumed put's work notices are taken whatever the store (lib/server_requests.ts).
    PUT_RESUME_WORK_FEATURE,
    // Every store's trees are walked and swept by the same code (lib/tree_send.ts, lib/tree_receive.ts).
    TREE_EXCLUDE_FEATURE,
  ].filter(Boolean);
  // How often a client hashing files in a tree transfer should tell (lib/tree_work.ts).
  const keepalive = entry.watch.noticeMs;
  await out.writeControl(FrameType.WELCOME, {
    server: `${NAME}/${VERSION}`,
    features,
    ...(keepalive !== undefined ? { keepalive } : {}),
    ...(challenge ? { challenge } : {}),
  });
  if (!ctx.token || !challenge) return true;
  const frame = await frames.readControl();
  if (entry.reason) return false;
  if (!frame) {
    ctx.log(`${stamp()} ${peer} refused: closed without answering the token challenge`);
    return false;
  }
  const deny = async (message: string) => {
    await out.writeControl(FrameType.ERROR, { code: "denied", message });
    ctx.log(`${stamp()} ${peer} refused: ${message}`);
    return false;
  };
  if (frame.type !== FrameType.AUTH) {
    return await deny("This server requires a token (--token-file)");
  }
  const auth = parseAuth(frame.json);
  const expected = await authMac(ctx.token, { role: "client", challenge, nonce: auth.nonce });
  if (!macMatches(expected, auth.mac)) return await deny("Wrong token");
  const mac = await authMac(ctx.token, { role: "server", challenge, nonce: auth.nonce });
  await out.writeControl(FrameType.OK, { mac });
  return true;
}

/**
 * After refusing mid-upload, the client may still be sending: half-close, then swallow what
 * arrives for a moment so the refusal is read rather than lost to a connection reset.
 */
async function drainAndClose(conn: Deno.Conn, frames: FrameReader): Promise<void> {
  // Half-close only: closing the writable would close the whole socket in Deno.
  await conn.closeWrite().catch(() => {});
  const timer = setTimeout(() => closeQuietly(conn), 5000);
  try {
    await frames.discardAll();
  } catch {
    // Connection reset: nothing left to drain.
  } finally {
    clearTimeout(timer);
  }
}
