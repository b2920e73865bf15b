/**
 * Who may use the HTTP side when the server has a token (`--token-file`): scripts send it as
 * `Authorization: Bearer TOKEN`; browsers sign in once with a form and then carry a session
 * cookie (HttpOnly, SameSite=Strict) whose value is an HMAC under the token, never the token.
 * A request that changes anything and rides on the cookie must come from the page itself (its
 * `Origin` or `Sec-Fetch-Site` says so), so another site cannot use a signed-in browser.
 * With `publicRead`, anyone may browse and download; uploads still need the token.
 *
 * @module
 */

import { hmacHex, hmacKey, macMatches } from "../auth.ts";
import { type Exchange, HttpError, PAGE_CSP } from "./handler.ts";
import { renderLogin } from "./listing_page.ts";

/** Name of the session cookie. */
export const SESSION_COOKIE = "ferry_session";

/** How long a browser stays signed in: 7 days. */
export const SESSION_MAX_AGE_S = 7 * 24 * 3600;

/** Access rules for the HTTP side; made by {@link createAccess}. */
export interface Access {
  /** HMAC key under the token: signs sessions and compares bearer tokens. */
  key: CryptoKey;
  /** Anyone may GET and HEAD; only changes need the token. */
  publicRead: boolean;
  /** Mark the cookie Secure (the server speaks HTTPS). */
  secure: boolean;
  /** HMAC of the token itself, what a bearer token must hash to. */
  bearer: string;
}

/** Options for {@link createAccess}. */
export interface AccessOptions {
  /** Let anyone browse and download (default false). */
  publicRead?: boolean;
  /** The listener speaks HTTPS: the cookie is marked Secure (default false). */
  secure?: boolean;
}

/** Access rules for a server holding `token`. */
export async function createAccess(
  token: Uint8Array,
  options: AccessOptions = {},
): Promise<Access> {
  const key = await hmacKey(token);
  const text = new TextDecoder().decode(token);
  return {
    key,
    publicRead: options.publicRead ?? false,
    secure: options.secure ?? false,
    bearer: await hmacHex(key, `ferry-http-bearer-v1\n${text}`),
  };
}

/** A new session cookie value: `v1.EXPIRES.MAC`, the MAC under the token over the expiry. */
async function newSession(access: Access): Promise<string> {
  const expires = Date.now() + SESSION_MAX_AGE_S * 1000;
  return `v1.${expires}.${await hmacHex(access.key, `ferry-http-session-v1\n${expires}`)}`;
}

async function sessionValid(access: Access, value: string): Promise<boolean> {
  const match = /^v1\.(\d{1,16})\.([0-9a-f]{64})$/.exec(value);
  if (!match || Number(match[1]) < Date.now()) return false;
  return macMatches(await hmacHex(access.key, `ferry-http-session-v1\n${match[1]}`), match[2]);
}

/** Whether `given` is the token, compared as HMACs in constant time. */
async function tokenMatches(access: Access, given: string): Promise<boolean> {
  return macMatches(
    access.bearer,
    await hmacHex(access.key, `ferry-http-bearer-v1\n${given.trim()}`),
  );
}

function cookieOf(request: Request, name: string): string | null {
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return rest.join("=");
  }
  return null;
}

/** Whether a browser sent the request from a page of another site. */
export function crossSite(request: Request, url: URL): boolean {
  return !sameOrigin(request, url);
}

/** Whether a request comes from a page of this server (not another site in the same browser). */
function sameOrigin(request: Request, url: URL): boolean {
  const origin = request.headers.get("origin");
  if (origin !== null && origin !== "null") return origin === url.origin;
  // Browsers send Origin on every cross-site change, "null" when a policy hides it; then Fetch
  // Metadata says where the request comes from. A client that sends neither is not a browser.
  const site = request.headers.get("sec-fetch-site");
  if (site !== null) return site === "same-origin";
  return origin === null;
}

function cookieHeader(access: Access, value: string, maxAge: number): string {
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}` +
    (access.secure ? "; Secure" : "");
}

/** What {@link authorize} decided. */
export interface Authorized {
  /** A response that ends the request here (a refusal, the login form, a sign-in), or null. */
  response: Response | null;
  /** A browser signed in with the cookie. */
  signedIn: boolean;
  /** The token was given (bearer or cookie): changes are allowed. */
  mayWrite: boolean;
}

/** Methods that change nothing: every other one needs the token, and may not come cross-site. */
export const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

/** Largest login form read. */
const MAX_FORM_BYTES = 8192;

/**
 * Decides whether a request may go on; serves `POST /?login` and `POST /?logout` itself. Throws
 * {@link HttpError} 401 or 403 to refuse.
 */
export async function authorize(
  request: Request,
  url: URL,
  _info: unknown,
  access: Access,
  exchange: Exchange,
): Promise<Authorized> {
  const safe = SAFE_METHODS.has(request.method);
  if (
    request.method === "POST" && (url.searchParams.has("login") || url.searchParams.has("logout"))
  ) {
    exchange.name = url.searchParams.has("login") ? "login" : "logout";
    if (!sameOrigin(request, url)) {
      throw new HttpError(403, "Refused: the form was sent from another site");
    }
    if (url.searchParams.has("logout")) {
      return {
        response: new Response(null, {
          status: 303,
          headers: { location: "/", "set-cookie": cookieHeader(access, "", 0) },
        }),
        signedIn: false,
        mayWrite: false,
      };
    }
    return {
      response: await login(request, access, exchange),
      signedIn: false,
      mayWrite: false,
    };
  }
  const bearer = /^Bearer\s+(.+)$/i.exec(request.headers.get("authorization") ?? "");
  if (bearer) {
    if (await tokenMatches(access, bearer[1])) {
      return { response: null, signedIn: false, mayWrite: true };
    }
    throw new HttpError(401, "Wrong token", { "www-authenticate": 'Bearer realm="ferry"' });
  }
  const session = cookieOf(request, SESSION_COOKIE);
  if (session !== null && await sessionValid(access, session)) {
    if (!safe && !sameOrigin(request, url)) {
      throw new HttpError(403, "Refused: the request was sent from another site");
    }
    return { response: null, signedIn: true, mayWrite: true };
  }
  if (request.method === "GET" && url.searchParams.has("login")) {
    exchange.name = "login";
    return {
      response: loginPage(url.searchParams.get("next") ?? "/", 200),
      signedIn: false,
      mayWrite: false,
    };
  }
  if (safe && access.publicRead && !url.searchParams.has("resume")) {
    return { response: null, signedIn: false, mayWrite: false };
  }
  exchange.result = "refused (no token)";
  if (safe && (request.headers.get("accept") ?? "").includes("text/html")) {
    return {
      response: loginPage(url.pathname + url.search, 401),
      signedIn: false,
      mayWrite: false,
    };
  }
  throw new HttpError(
    401,
    "This server needs its token: send Authorization: Bearer TOKEN",
    { "www-authenticate": 'Bearer realm="ferry"' },
  );
}

function loginPage(next: string, status: number): Response {
  return new Response(renderLogin(safeNext(next), false), {
    status,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "content-security-policy": PAGE_CSP,
      "www-authenticate": 'Bearer realm="ferry"',
    },
  });
}

/** Only a path on this server: never "//host" or "https://…" (an open redirect). */
function safeNext(next: string): string {
  return /^\/(?![/\\])/.test(next) ? next : "/";
}

/**
 * The sign-in form's text, read a chunk at a time and refused (413) once it passes
 * {@link MAX_FORM_BYTES}: anyone may post it, and a body without a length must not be held whole.
 */
async function readForm(body: ReadableStream<Uint8Array> | null): Promise<string> {
  if (body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_FORM_BYTES) {
      await reader.cancel().catch(() => {});
      throw new HttpError(413, "Login form too large");
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return new TextDecoder().decode(bytes);
}

async function login(request: Request, access: Access, exchange: Exchange): Promise<Response> {
  const length = Number(request.headers.get("content-length") ?? "0");
  if (!(length <= MAX_FORM_BYTES)) throw new HttpError(413, "Login form too large");
  const form = new URLSearchParams(await readForm(request.body));
  const next = safeNext(form.get("next") ?? "/");
  if (!await tokenMatches(access, form.get("token") ?? "")) {
    exchange.result = "refused (wrong token)";
    return new Response(renderLogin(next, true), {
      status: 401,
      headers: {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
        "content-security-policy": PAGE_CSP,
      },
    });
  }
  exchange.result = "signed in";
  return new Response(null, {
    status: 303,
    headers: {
      location: next,
      "set-cookie": cookieHeader(access, await newSession(access), SESSION_MAX_AGE_S),
      "cache-control": "no-store",
    },
  });
}
