/**
 * The client's side of the handshake: the preamble and HELLO (asking for KEEPALIVEs when the
 * session watches for a stalled server), telling the user plainly when what answered is not a
 * ferry server (HTTP, the seed protocol, TLS), the WELCOME, and the token's challenge-response in
 * both directions. `Session.handshake` (lib/client.ts) runs it on its connection.
 *
 * @module
 */

import { authMac, macMatches, newNonce } from "./auth.ts";
import { TLS_ALERT_RECORD } from "./connection.ts";
import { ProtocolError, UserError } from "./errors.ts";
import {
  type ControlFrame,
  encodeHeader,
  encodePreamble,
  FrameType,
  frameTypeName,
  PREAMBLE_LENGTH,
  PROTOCOL_VERSION,
  startsPreamble,
} from "./frames.ts";
import type { FrameReader } from "./frame_reader.ts";
import type { FrameWriter } from "./frame_writer.ts";
import { KEEPALIVE_MAX_MS, type Ok, parseWelcome, type Welcome } from "./protocol.ts";
import { concatBytes } from "./transfer.ts";
import { NAME, VERSION } from "./version.ts";

/** How an HTTP server's answer starts: a client that reached one says so at once. */
const HTTP_STATUS_START = "HTTP/";

/**
 * How an HTML page starts: an HTTP server that takes the greeting for an HTTP/0.9 request
 * (Python's http.server) answers with the page alone, without a status line. Eight bytes are
 * read first: `<!DOCTYP`.
 */
const HTML_START = /^<(!doctyp|html)/i;

/**
 * Ends the HELLO's JSON (whitespace to JSON): a server that reads a whole line before it answers,
 * as many HTTP servers do, answers at once instead of waiting for one.
 */
const HELLO_LINE_END = "\r\n";

/** What the handshake uses of the session it opens. */
export interface HandshakeIo {
  /** Frames from the server. */
  frames: FrameReader;
  /** Frames to the server. */
  out: FrameWriter;
  /** `host:port` of the server, for messages. */
  target: string;
  /** Whether the connection is TLS (for messages). */
  tls: boolean;
  /** Shared secret, if the server requires one. */
  token?: Uint8Array;
  /** The session's stall timeout, if it watches for a stalled server. */
  stallTimeoutMs?: number;
  /** Reads the server's next frame, KEEPALIVE skipped; a `RefusedError` for ERROR. */
  expectFrame(): Promise<ControlFrame>;
  /** Reads the server's answer: OK, or a `RefusedError` for ERROR (KEEPALIVE skipped). */
  expectOk(): Promise<Ok>;
}

/**
 * Sends the preamble and HELLO and checks the server's answer: its preamble (or, said plainly,
 * what else answered) and its WELCOME, which it returns.
 */
export async function greet(io: HandshakeIo): Promise<Welcome> {
  const hello = new TextEncoder().encode(
    JSON.stringify({
      client: `${NAME}/${VERSION}`,
      // Watching for a stalled server: ask for a sign of life while it flushes an upload.
      ...(io.stallTimeoutMs === undefined
        ? {}
        : { keepalive: Math.min(KEEPALIVE_MAX_MS, io.stallTimeoutMs / 4) }),
    }) + HELLO_LINE_END,
  );
  await io.out.writeRaw(
    concatBytes([
      encodePreamble(PROTOCOL_VERSION),
      encodeHeader(FrameType.HELLO, hello.length),
      hello,
    ]),
  );
  let first = await io.frames.readSome(new Uint8Array(PREAMBLE_LENGTH)).catch(() => null);
  // A peer that is not a ferry server (or not one without TLS) is a mistake in the command
  // line, said plainly, not a transfer that failed.
  if (!first) {
    throw new UserError(
      `Server at ${io.target} closed the connection during the handshake` +
        (io.tls ? "" : " (does it require --tls?)"),
    );
  }
  if (!startsPreamble(first[0])) {
    first = await readWhilePrefixOf(io, first, HTTP_STATUS_START);
  }
  const text = new TextDecoder().decode(first);
  if (!startsPreamble(first[0])) {
    throw new UserError(
      text.startsWith(HTTP_STATUS_START) || HTML_START.test(text)
        ? `Server at ${io.target} is not a ferry server: it answered HTTP`
        : text.startsWith("cancel")
        ? `Server at ${io.target} speaks the seed protocol; try --legacy`
        : first[0] === TLS_ALERT_RECORD && !io.tls
        ? `Server at ${io.target} answered with TLS; use --tls`
        : `Server at ${io.target} does not speak the ferry protocol`,
    );
  }
  await io.frames.readPreamble(first);
  const frame = await io.expectFrame();
  if (frame.type !== FrameType.WELCOME) {
    throw new ProtocolError(`Expected WELCOME, got ${frameTypeName(frame.type)}`);
  }
  return parseWelcome(frame.json);
}

/**
 * Reads on while `bytes` could still be the start of `prefix`, so a peer's answer that came
 * in pieces is recognised; stops at the end of the stream or once it cannot be.
 */
async function readWhilePrefixOf(
  io: HandshakeIo,
  bytes: Uint8Array,
  prefix: string,
): Promise<Uint8Array> {
  const wanted = new TextEncoder().encode(prefix);
  while (bytes.length < wanted.length && bytes.every((b, i) => b === wanted[i])) {
    const more = await io.frames.readSome(new Uint8Array(wanted.length - bytes.length))
      .catch(() => null);
    if (!more) break;
    bytes = concatBytes([bytes, more]);
  }
  return bytes;
}

/** Answers the server's challenge, and makes the server prove it holds the token too. */
export async function authenticate(io: HandshakeIo, welcome: Welcome): Promise<void> {
  const token = io.token;
  if (!welcome.challenge) {
    if (token) {
      throw new UserError(
        `Server at ${io.target} did not ask for the token, so it cannot prove it holds it; refusing to go on`,
      );
    }
    return;
  }
  if (!token) {
    throw new UserError(`Server at ${io.target} requires a token: use --token-file`);
  }
  const nonce = newNonce();
  const challenge = welcome.challenge;
  await io.out.writeControl(FrameType.AUTH, {
    nonce,
    mac: await authMac(token, { role: "client", challenge, nonce }),
  });
  const ok = await io.expectOk();
  const expected = await authMac(token, { role: "server", challenge, nonce });
  if (!ok.mac || !macMatches(expected, ok.mac)) {
    throw new ProtocolError(`Server at ${io.target} could not prove it holds the token`);
  }
}
