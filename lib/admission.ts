/**
 * Admission: who may hold a connection slot. Connections still in their handshake (not yet
 * greeted, not yet authenticated) live in a pool of their own, apart from the established ones,
 * so that clients that never finish a handshake cannot take the slots of clients that did; each
 * address may hold only so many connections of either kind; and when every established slot is
 * taken, a newcomer that completes its handshake takes the slot of the connection that has sat
 * longest between requests, so that connections kept open by a request now and then cannot
 * hold every slot.
 *
 * @module
 */

/** Limits for an {@link Admission}. */
export interface AdmissionLimits {
  /** Established connections (handshake done) at once. */
  maxConnections: number;
  /** Connections still in their handshake at once; when full, the oldest makes room. */
  maxHandshakes: number;
  /** Connections, of either kind, from one address (one /64 for IPv6); 0 for no limit. */
  maxPerAddress: number;
}

/** How an {@link Admission} learns which established connections may give up their slot. */
export interface ReclaimHooks<T> {
  /**
   * How long `value`'s connection has sat between requests (no request under way, no byte of
   * the next one in), in milliseconds; undefined while it is in a request or cannot be asked.
   */
  idleFor(value: T): number | undefined;
  /** Called with the connection whose slot went to a newcomer; the caller closes it. */
  reclaimed(ticket: Ticket<T>): void;
}

/**
 * Least time a connection must have sat between requests before its slot may go to a newcomer:
 * a client between two quick requests (one file after another) is never the one sent away.
 */
export const RECLAIM_AFTER_MS = 1000;

/** A connection that has been let in, until {@link Admission.release}. */
export interface Ticket<T> {
  /** The address it is counted under (see {@link addressKey}). */
  readonly key: string;
  /** What the caller attached: its own state for the connection. */
  readonly value: T;
  /** Still in the handshake pool. */
  handshaking: boolean;
  /** Counted in a pool; cleared by {@link Admission.release}. */
  counted: boolean;
}

/** Why a connection was not let in. */
export type Refusal =
  | { reason: "full"; limit: number }
  | { reason: "address"; limit: number; key: string };

/** What {@link Admission.admit} decided. */
export type Admitted<T> =
  | { ticket: Ticket<T>; evicted?: Ticket<T> }
  | { refused: Refusal };

/**
 * Counts connections per pool and per address, and decides who gets in.
 *
 * @example
 * ```ts
 * const admission = new Admission<string>({ maxConnections: 64, maxHandshakes: 64, maxPerAddress: 16 });
 * const result = admission.admit("127.0.0.1", "conn-1");
 * if ("ticket" in result) {
 *   admission.establish(result.ticket); // handshake done
 *   admission.release(result.ticket); // connection closed
 * }
 * ```
 */
export class Admission<T> {
  readonly limits: AdmissionLimits;
  /** Handshaking connections, oldest first (a Set keeps insertion order). */
  #handshaking = new Set<Ticket<T>>();
  #established = new Set<Ticket<T>>();
  #perAddress = new Map<string, number>();
  #reclaim?: ReclaimHooks<T>;

  /**
   * Creates an admission with these limits. Without `reclaim`, a full server refuses newcomers
   * however long its connections have sat idle between requests.
   */
  constructor(limits: AdmissionLimits, reclaim?: ReclaimHooks<T>) {
    this.limits = limits;
    this.#reclaim = reclaim;
  }

  /** Established connections now. */
  get established(): number {
    return this.#established.size;
  }

  /** The established connection that has sat longest between requests, past the least time. */
  #idlest(): Ticket<T> | undefined {
    if (!this.#reclaim) return undefined;
    let idlest: Ticket<T> | undefined;
    let longest = RECLAIM_AFTER_MS - 1;
    for (const ticket of this.#established) {
      const idle = this.#reclaim.idleFor(ticket.value);
      if (idle !== undefined && idle > longest) [idlest, longest] = [ticket, idle];
    }
    return idlest;
  }

  /** Connections in their handshake now. */
  get handshaking(): number {
    return this.#handshaking.size;
  }

  /**
   * Lets a new connection from `hostname` into the handshake pool, or refuses it: when every
   * established slot is taken by a connection that is in a request (or has not sat long between
   * requests), or its address holds its share already. When the handshake pool
   * is full, the oldest connection in it is evicted (returned, for the caller to cut): a client
   * that speaks promptly finishes long before it would be the oldest, and one that dawdles
   * cannot keep a newcomer out.
   */
  admit(hostname: string, value: T): Admitted<T> {
    const { maxConnections, maxHandshakes, maxPerAddress } = this.limits;
    // A slot that could be reclaimed is only taken once the newcomer's handshake is done (see
    // establish): connections that never finish one cannot send anyone away.
    if (this.#established.size >= maxConnections && !this.#idlest()) {
      return { refused: { reason: "full", limit: maxConnections } };
    }
    const key = addressKey(hostname);
    const mine = this.#perAddress.get(key) ?? 0;
    if (maxPerAddress > 0 && mine >= maxPerAddress) {
      return { refused: { reason: "address", limit: maxPerAddress, key } };
    }
    let evicted: Ticket<T> | undefined;
    if (this.#handshaking.size >= maxHandshakes) {
      evicted = this.#handshaking.values().next().value!;
      // Out of the pool at once, so it is not evicted twice; its address still counts it
      // until it has closed.
      this.#handshaking.delete(evicted);
    }
    const ticket: Ticket<T> = { key, value, handshaking: true, counted: true };
    this.#handshaking.add(ticket);
    this.#perAddress.set(key, mine + 1);
    return { ticket, evicted };
  }

  /**
   * Moves a connection whose handshake is done to the established pool; false (and it stays
   * where it was) when that pool is full of connections in a request, or the connection was
   * evicted. When the pool is full, the connection that has sat longest between requests (at
   * least {@link RECLAIM_AFTER_MS}) gives up its slot: it leaves the pool at once and is handed
   * to {@link ReclaimHooks.reclaimed}; its address still counts it until it has closed.
   */
  establish(ticket: Ticket<T>): boolean {
    if (!ticket.handshaking || !this.#handshaking.has(ticket)) return false;
    if (this.#established.size >= this.limits.maxConnections) {
      const idlest = this.#idlest();
      if (!idlest) return false;
      this.#established.delete(idlest);
      this.#reclaim!.reclaimed(idlest);
    }
    this.#handshaking.delete(ticket);
    ticket.handshaking = false;
    this.#established.add(ticket);
    return true;
  }

  /** Forgets a closed connection; safe to call twice. */
  release(ticket: Ticket<T>): void {
    if (!ticket.counted) return;
    ticket.counted = false;
    if (ticket.handshaking) this.#handshaking.delete(ticket);
    else this.#established.delete(ticket);
    const left = (this.#perAddress.get(ticket.key) ?? 1) - 1;
    if (left > 0) this.#perAddress.set(ticket.key, left);
    else this.#perAddress.delete(ticket.key);
  }
}

/**
 * The address a connection is counted under: an IPv4 address as it is (an IPv4-mapped IPv6
 * address, as a dual-stack listener reports IPv4 clients, becomes the IPv4 address it maps), and
 * an IPv6 address by its /64 prefix, the block one host or site is usually given; a per-address
 * limit per single IPv6 address would count nothing.
 *
 * @example
 * ```ts
 * addressKey("::ffff:192.0.2.7"); // "192.0.2.7"
 * addressKey("2001:db8:0:1::42"); // "2001:db8:0:1::/64"
 * ```
 */
export function addressKey(hostname: string): string {
  const host = hostname.replace(/^\[|\]$/g, "").replace(/%.*$/, "").toLowerCase();
  if (!host.includes(":")) return host;
  const groups = expandIpv6(host);
  if (!groups) return host;
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) {
    return [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff].join(".");
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (a trailing dotted IPv4 part allowed), or null. */
function expandIpv6(host: string): number[] | null {
  let text = host;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const b = dotted.slice(1).map(Number);
    if (b.some((n) => n > 255)) return null;
    text = text.slice(0, dotted.index) +
      `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const part = (s: string) => (s === "" ? [] : s.split(":"));
  const head = part(halves[0]);
  const tail = halves.length === 2 ? part(halves[1]) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  const groups = all.map((g) => /^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16) : NaN);
  return groups.some(Number.isNaN) ? null : groups;
}
