export * from './agents.js';
export * from './control-plane.js';
export * from './graphql.js';
export * from './jobs.js';
export * from './paths.js';
export * from './postgres.js';
export * from './processes.js';
export * from './wait.js';
