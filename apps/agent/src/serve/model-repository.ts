/**
 * The models this agent serves, by name, one version of each live at a time. `replace` loads the
 * new version beside the old one, switches atomically once it is ready, and releases the old
 * session only when the requests that were running on it have finished: a deployment never fails
 * a request in flight. Operations on one name run one after another, in the order called.
 */
import { errorMessage, type Logger } from '../logger.js';
import type { ExecutionProvider, ModelSession } from './model-session.js';
import { ServeError, clipped } from './serve.errors.js';

export type ModelState = 'LOADING' | 'READY' | 'FAILED' | 'UNLOADED';

/** A state change of one model version, for the control plane (numbers and names, no data). */
export interface ModelStateChange {
  readonly name: string;
  readonly version: string;
  readonly state: ModelState;
  readonly executionProvider: ExecutionProvider | null;
  /** Why a load failed (FAILED only). */
  readonly error: string | null;
}

export interface ModelStatus extends ModelStateChange {
  /** Requests running on this version now. */
  readonly inFlight: number;
}

/** A version held for one request; release it when the request is done (idempotent). */
export interface ModelLease {
  readonly name: string;
  readonly version: string;
  readonly session: ModelSession;
  release(): void;
}

/** A model file's path, or the model's (verified) bytes. */
export type ModelSource = string | Uint8Array;

export type SessionLoader = (source: ModelSource) => Promise<ModelSession>;

export interface ModelRepositoryOptions {
  /** Loads a model; default loadModelSession with its default execution providers. */
  loadSession?: SessionLoader;
  onStateChange?: (change: ModelStateChange) => void;
  logger?: Logger;
}

/** Model names and versions travel in URL paths and logs: keep them plain. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

class Slot {
  state: ModelState = 'LOADING';
  session: ModelSession | null = null;
  /** Kept after the session is released, for the UNLOADED report. */
  executionProvider: ExecutionProvider | null = null;
  error: string | null = null;
  inFlight = 0;
  private releasedResolve!: () => void;
  /** Settles when the session has been released after the slot stopped taking requests. */
  readonly released = new Promise<void>((resolve) => (this.releasedResolve = resolve));
  constructor(
    readonly name: string,
    readonly version: string,
  ) {}
  markReleased() {
    this.releasedResolve();
  }
}

interface Entry {
  /** The version requests go to: READY, or the LOADING/FAILED first load. */
  current: Slot;
  /** A replacement being loaded while `current` keeps serving. */
  next: Slot | null;
  /** The tail of this name's queue of operations. */
  queue: Promise<unknown>;
}

export class ModelRepository {
  private readonly entries = new Map<string, Entry>();
  /** Slots out of service whose sessions wait for their last request. */
  private readonly retiring = new Set<Slot>();
  private readonly loadSession: SessionLoader;

  constructor(private readonly options: ModelRepositoryOptions = {}) {
    this.loadSession =
      options.loadSession ??
      (async (source) => (await import('./model-session.js')).loadModelSession(source));
  }

  /** Loads a model under a new name. Rejects with the load error (the name is then FAILED). */
  load(name: string, version: string, source: ModelSource): Promise<ModelStatus> {
    const entry = this.entries.get(name);
    if (entry && entry.current.state !== 'FAILED') {
      return Promise.reject(
        new ServeError('INVALID_OPERATION', `model '${name}' is already loaded; replace it instead`),
      );
    }
    return this.replace(name, version, source);
  }

  /**
   * Loads `version` and makes it the one served, then retires the old version in the background
   * (released once its in-flight requests finish). If the new version fails to load, the old one
   * keeps serving and this rejects. A name not loaded yet (or whose load failed) is simply loaded.
   * `beforeSwitch`, when given, is awaited between the load and the switch (serve workers switch
   * together, once every one of them has loaded); if it rejects, nothing is switched, the new
   * version is dropped (FAILED) and this rejects with its error.
   */
  replace(
    name: string,
    version: string,
    source: ModelSource,
    beforeSwitch?: (loaded: ModelStatus) => Promise<void>,
  ): Promise<ModelStatus> {
    try {
      checkName('model name', name);
      checkName('model version', version);
    } catch (err) {
      return Promise.reject(err);
    }
    let entry = this.entries.get(name);
    let initial: Slot | null = null;
    if (!entry) {
      // Visible at once, as LOADING: requests get 503, not 404, while the first version loads.
      initial = new Slot(name, version);
      entry = { current: initial, next: null, queue: Promise.resolve() };
      this.entries.set(name, entry);
      this.emit(initial);
    }
    const target = entry;
    return this.enqueue(target, () => this.loadVersion(name, target, initial, version, source, beforeSwitch));
  }

  private async loadVersion(
    name: string,
    entry: Entry,
    initial: Slot | null,
    version: string,
    source: ModelSource,
    beforeSwitch?: (loaded: ModelStatus) => Promise<void>,
  ): Promise<ModelStatus> {
    if (this.entries.get(name) !== entry) {
      throw new ServeError(
        'INVALID_OPERATION',
        `model '${name}' was unloaded before version ${version} loaded`,
      );
    }
    let slot = initial;
    if (!slot) {
      slot = new Slot(name, version);
      // A READY version keeps serving while its replacement loads; a failed one is simply replaced.
      if (entry.current.state === 'READY') entry.next = slot;
      else entry.current = slot;
      this.emit(slot);
    }
    try {
      slot.session = await this.loadSession(source);
    } catch (err) {
      if (slot.state === 'UNLOADED') throw err; // closed (forced) while it loaded
      slot.state = 'FAILED';
      slot.error = err instanceof Error ? err.message : String(err);
      if (entry.next === slot) entry.next = null;
      this.emit(slot);
      this.options.logger?.warn({ model: name, version, err: slot.error }, 'model failed to load');
      throw err instanceof ServeError ? err : new ServeError('MODEL_LOAD_FAILED', slot.error);
    }
    if (slot.state === 'UNLOADED') {
      // The repository was closed (forced) while this version loaded.
      await slot.session.release();
      slot.session = null;
      throw new ServeError(
        'INVALID_OPERATION',
        `model '${name}' was unloaded while version ${version} loaded`,
      );
    }
    slot.executionProvider = slot.session.executionProvider;
    if (beforeSwitch) {
      try {
        await beforeSwitch(status(slot));
      } catch (err) {
        if (!unloaded(slot)) await this.drop(entry, slot, err);
        throw err;
      }
      if (unloaded(slot)) {
        // The repository was closed (forced) while the switch waited; the close released it.
        throw new ServeError(
          'INVALID_OPERATION',
          `model '${name}' was unloaded before version ${version} served`,
        );
      }
    }
    const old = entry.current === slot ? null : entry.current;
    // The switch: one synchronous step, so every request sees either the old or the new version.
    slot.state = 'READY';
    entry.current = slot;
    entry.next = null;
    this.emit(slot);
    this.options.logger?.info(
      {
        model: name,
        version,
        executionProvider: slot.session.executionProvider,
        cudaFallbackReason: slot.session.cudaFallbackReason ?? undefined,
        conversions: slot.session.conversions.length > 0 ? slot.session.conversions : undefined,
      },
      'model ready',
    );
    if (old) void this.retire(old);
    return status(slot);
  }

  /** A loaded version that will not be switched to: FAILED, its session released. */
  private async drop(entry: Entry, slot: Slot, reason: unknown): Promise<void> {
    slot.state = 'FAILED';
    slot.error = `not switched to: ${errorMessage(reason)}`;
    if (entry.next === slot) entry.next = null;
    const session = slot.session;
    slot.session = null;
    this.emit(slot);
    try {
      await session?.release();
    } catch (err) {
      this.options.logger?.warn(
        { model: slot.name, version: slot.version, err: errorMessage(err) },
        'releasing a model session failed',
      );
    }
  }

  /** Stops serving a name; resolves once its in-flight requests have finished and it is released. */
  unload(name: string): Promise<void> {
    const entry = this.entries.get(name);
    if (!entry) return Promise.resolve();
    return this.enqueue(entry, async () => {
      if (this.entries.get(name) !== entry) return;
      this.entries.delete(name);
      await this.retire(entry.current);
    });
  }

  /**
   * Unloads every model (for shutdown): gracefully, once their requests in flight are done; or,
   * with force, at once (requests still running on them fail).
   */
  async close(options: { force?: boolean } = {}): Promise<void> {
    if (options.force) {
      const slots = [...this.entries.values()].flatMap((e) => (e.next ? [e.current, e.next] : [e.current]));
      this.entries.clear();
      await Promise.all([...slots, ...this.retiring].map((slot) => this.retire(slot, true)));
      return;
    }
    await Promise.all([...this.entries.keys()].map((name) => this.unload(name)));
  }

  /**
   * Holds the version requests for `name` (and `version`, when given) go to, for one request.
   * Throws NOT_FOUND for an unknown name or version, NOT_READY while it loads or after it failed.
   */
  acquire(name: string, version?: string): ModelLease {
    const slot = this.servingSlot(name, version);
    const session = slot.session!;
    slot.inFlight += 1;
    let released = false;
    return {
      name,
      version: slot.version,
      session,
      release: () => {
        if (released) return;
        released = true;
        slot.inFlight -= 1;
        if (slot.inFlight === 0 && this.retiring.has(slot)) void this.releaseSession(slot);
      },
    };
  }

  /** Throws as acquire would, without holding anything (to refuse a request before reading it). */
  check(name: string, version?: string): void {
    this.servingSlot(name, version);
  }

  /** The served version of every name, and the replacement being loaded if any. */
  list(): ModelStatus[] {
    return [...this.entries.values()].flatMap((entry) =>
      (entry.next ? [entry.current, entry.next] : [entry.current]).map(status),
    );
  }

  /** The version of `name` that is served (or loading, or failed); undefined for an unknown name. */
  get(name: string): ModelStatus | undefined {
    const entry = this.entries.get(name);
    return entry ? status(entry.current) : undefined;
  }

  /** OIP "server ready": every model's served version is READY (true when there are none). */
  allReady(): boolean {
    return [...this.entries.values()].every((entry) => entry.current.state === 'READY');
  }

  private servingSlot(name: string, version?: string): Slot {
    const entry = this.entries.get(name);
    if (!entry) throw new ServeError('NOT_FOUND', `model '${clipped(name)}' is not served here`);
    const slot = entry.current;
    if (version !== undefined && version !== slot.version) {
      if (entry.next?.version === version) {
        throw new ServeError('NOT_READY', `model '${name}' version '${version}' is loading`);
      }
      throw new ServeError(
        'NOT_FOUND',
        `model '${name}' has no version '${clipped(version)}' (serving '${slot.version}')`,
      );
    }
    if (slot.state === 'LOADING') {
      throw new ServeError('NOT_READY', `model '${name}' version '${slot.version}' is loading`);
    }
    if (slot.state !== 'READY' || !slot.session) {
      throw new ServeError(
        'NOT_READY',
        `model '${name}' version '${slot.version}' failed to load: ${slot.error ?? 'unknown error'}`,
      );
    }
    return slot;
  }

  /** Takes a slot out of service; its session goes when its last request does (or now, with force). */
  private retire(slot: Slot, force = false): Promise<void> {
    if (slot.state !== 'UNLOADED') {
      this.retiring.add(slot);
      if (force || slot.inFlight === 0) void this.releaseSession(slot);
    }
    return slot.released;
  }

  private async releaseSession(slot: Slot): Promise<void> {
    if (slot.state === 'UNLOADED') return;
    const session = slot.session;
    slot.state = 'UNLOADED';
    slot.session = null;
    if (session) {
      try {
        await session.release();
      } catch (err) {
        this.options.logger?.warn(
          { model: slot.name, version: slot.version, err: errorMessage(err) },
          'releasing a model session failed',
        );
      }
    }
    this.retiring.delete(slot);
    this.emit(slot);
    slot.markReleased();
  }

  private enqueue<T>(entry: Entry, op: () => Promise<T>): Promise<T> {
    const run = entry.queue.then(op, op);
    entry.queue = run.catch(() => undefined);
    return run;
  }

  private emit(slot: Slot): void {
    const change = status(slot);
    try {
      this.options.onStateChange?.({
        name: change.name,
        version: change.version,
        state: change.state,
        executionProvider: change.executionProvider,
        error: change.error,
      });
    } catch (err) {
      this.options.logger?.error({ err }, 'a model state listener threw');
    }
  }
}

/** Read afresh after an await (a forced close may have unloaded the slot meanwhile). */
const unloaded = (slot: Slot): boolean => slot.state === 'UNLOADED';

function status(slot: Slot): ModelStatus {
  return {
    name: slot.name,
    version: slot.version,
    state: slot.state,
    executionProvider: slot.executionProvider,
    error: slot.error,
    inFlight: slot.inFlight,
  };
}

function checkName(what: string, value: string): void {
  if (!NAME.test(value)) {
    throw new ServeError(
      'INVALID_OPERATION',
      `${what} must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}
