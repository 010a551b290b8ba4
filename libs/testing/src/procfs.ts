/**
 * The process table as tests read it (Linux /proc): whether a process still runs, and which ones
 * match (by process group, command line or environment). A zombie counts as gone: it has exited
 * and holds nothing but its pid.
 */
import fs from 'node:fs';

export interface ProcessEntry {
  pid: number;
  pgrp: number;
  /** Argument vector (empty when unreadable). */
  argv: string[];
  /** Environment entries `KEY=value` (empty when unreadable: another user's process). */
  environ: string[];
}

/** Whether the process runs (exists and is not a zombie). */
export function isAlive(pid: number): boolean {
  const state = stateOf(pid)?.state;
  return state !== undefined && state !== 'Z';
}

/** The pids of living processes that `match` accepts. */
export function livingProcesses(match: (entry: ProcessEntry) => boolean): number[] {
  return fs.readdirSync('/proc').flatMap((name) => {
    if (!/^\d+$/.test(name)) return [];
    const pid = Number(name);
    const stat = stateOf(pid);
    if (stat === null || stat.state === 'Z') return [];
    const entry = { pid, pgrp: stat.pgrp, argv: nulList(pid, 'cmdline'), environ: nulList(pid, 'environ') };
    return match(entry) ? [pid] : [];
  });
}

function stateOf(pid: number): { state: string; pgrp: number } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // After the command name (in parentheses, may hold spaces): state, ppid, pgrp, …
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state, pgrp: Number(pgrp) };
  } catch {
    return null;
  }
}

function nulList(pid: number, file: 'cmdline' | 'environ'): string[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/${file}`, 'latin1')
      .split('\0')
      .filter((s) => s !== '');
  } catch {
    return [];
  }
}
