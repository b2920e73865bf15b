/**
 * What a connection's frame reader and writer record of its traffic for the watchdogs:
 * {@link Activity} (when a byte last moved, whether the peer is behind, what was received), handed
 * to both through {@link FrameStreamOptions}. The reader marks the peer caught up when it hears
 * from it; the writer marks it behind while a write waits for room.
 *
 * @module
 */

/** When a connection last moved a byte, in `Date.now()` milliseconds; for idle timeouts. */
export interface Activity {
  /** Time of the last read or write that made progress. */
  last: number;
  /**
   * True while the peer may still have bytes to read from the kernel's buffers: a write is
   * waiting for room, or one had to wait and the peer has sent nothing since. The kernel reports
   * room only once a third of its send buffer has drained, so meanwhile a slow reader and a
   * stopped one look alike.
   */
  peerBehind?: boolean;
  /** Bytes read so far, counted when set (the server's watchdog judges rates by it). */
  received?: number;
  /**
   * Bytes written so far, counted when set (the server's watchdog tells by it whether it sent
   * anything between two of a client's work notices).
   */
  sent?: number;
}

/** Options for {@link FrameReader} and {@link FrameWriter}. */
export interface FrameStreamOptions {
  /** Updated whenever bytes move. */
  activity?: Activity;
}
