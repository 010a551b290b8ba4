export * from './subjects.js';
export * from './messages.js';
export * from './ml.js';
export * from './telemetry.js';
export * from './serving.js';
export * from './nats-servers.js';
export * from './numbers.js';
export * from './text.js';
