/**
 * A line diff of two programs (longest common subsequence), for the difference analysis: the
 * run says how the clusters differ in words; the diff of the two best answers shows it.
 */

export type DiffLine = { readonly kind: "same" | "removed" | "added"; readonly text: string };

/** Beyond this many lines on a side the table would be too large: the diff is not computed. */
export const MAX_DIFF_LINES = 400;

export function lineDiff(before: string, after: string): DiffLine[] | null {
  const a = before.replace(/\n$/, "").split("\n");
  const b = after.replace(/\n$/, "").split("\n");
  if (a.length > MAX_DIFF_LINES || b.length > MAX_DIFF_LINES) {
    return null;
  }
  // lcs[i][j]: length of the longest common subsequence of a[i:] and b[j:].
  const lcs = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    const row = lcs[i] ?? [];
    const below = lcs[i + 1] ?? [];
    for (let j = b.length - 1; j >= 0; j--) {
      row[j] = a[i] === b[j] ? (below[j + 1] ?? 0) + 1 : Math.max(below[j] ?? 0, row[j + 1] ?? 0);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const left = a[i];
    const right = b[j];
    if (left !== undefined && right !== undefined && left === right) {
      out.push({ kind: "same", text: left });
      i++;
      j++;
    } else if (right === undefined || (left !== undefined && (lcs[i + 1]?.[j] ?? 0) >= (lcs[i]?.[j + 1] ?? 0))) {
      out.push({ kind: "removed", text: left ?? "" });
      i++;
    } else {
      out.push({ kind: "added", text: right });
      j++;
    }
  }
  return out;
}
