/**
 * The one statistic every bench script reports: the median of its runs (scripts/bench.ts,
 * bench_s3.ts and bench_tree.ts share it).
 *
 * @module
 */

/**
 * Median of a non-empty list.
 *
 * @example
 * ```ts
 * import { median } from "./bench_stats.ts";
 * console.log(median([3, 1, 2])); // 2
 * ```
 */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
