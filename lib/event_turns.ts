/**
 * Turns of the event loop for long loops that await nothing really pending: a loop whose awaits
 * all resolve at once (a walk whose names are in memory, `--exclude` matching, a manifest
 * checked against a tree already read) holds the event loop for as long as it runs, and no timer
 * (a transfer's work notices), no other connection of a server and no other transfer runs
 * meanwhile. {@link EventTurns} gives it a turn every {@link TURN_MS} milliseconds.
 *
 * @module
 */

/**
 * Longest a loop holds the event loop between turns, in milliseconds. A turn (a zero timer: the
 * one macrotask after which both timers and I/O run, where an immediate lets no I/O in and a
 * message no timer) waits out the timers' granularity, a millisecond or two, so turns come no
 * more often than this: a long loop idles at most about a tenth of its time, and another client
 * of a server waits about this long at most for its turn.
 */
export const TURN_MS = 20;

/**
 * A loop's clock: asked once per unit of work, it says when the loop has held the event loop for
 * {@link TURN_MS} (or the milliseconds given) since its last turn, which {@link EventTurns.take}
 * then gives. The check is a clock reading and a comparison, cheap enough for every entry of a
 * tree.
 *
 * @example
 * ```ts
 * import { EventTurns } from "./event_turns.ts";
 *
 * const turns = new EventTurns();
 * for (const name of ["a", "b", "c"]) {
 *   void name; // ...a unit of work that awaits nothing really pending...
 *   if (turns.due) await turns.take();
 * }
 * ```
 */
export class EventTurns {
  #everyMs: number;
  /** When the loop last gave a turn, or started. */
  #last = Date.now();

  /** `everyMs`: the longest run between turns (default {@link TURN_MS}). */
  constructor(everyMs: number = TURN_MS) {
    this.#everyMs = everyMs;
  }

  /** Whether the loop has run for the interval since its last turn: time for {@link take}. */
  get due(): boolean {
    return Date.now() - this.#last >= this.#everyMs;
  }

  /** Gives the event loop a turn (timers and I/O run), and starts the interval again. */
  async take(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.restart();
  }

  /**
   * Starts the interval again without a turn: for a loop that has just awaited something really
   * pending (the next frame off the network), during which the event loop had its turns.
   */
  restart(): void {
    this.#last = Date.now();
  }
}
