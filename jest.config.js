// Jest runs the TypeScript sources as native ES modules: Nest 12 and @nestjs/graphql 14 ship as ESM
// only, so a CommonJS transform cannot load them. @swc/jest strips types (with decorator metadata)
// and keeps `import`; Node's VM modules (--experimental-vm-modules, set by the npm scripts) load them.
const swc = [
  '@swc/jest',
  {
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
      target: 'es2022',
      keepClassNames: true,
    },
    module: { type: 'es6' },
  },
];
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper: {
    '^@hearth/contracts$': '<rootDir>/libs/contracts/src/index.ts',
    '^@hearth/testing$': '<rootDir>/libs/testing/src/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  testEnvironment: 'node',
  rootDir: '.',
  // Test logs and packed agent archives (scripts/pack-agent.js): not sources, and their package.json
  // files would shadow the workspaces' in jest's module map.
  modulePathIgnorePatterns: ['<rootDir>/.tmp/'],
};
export default {
  // A global option (per-project values are ignored); end-to-end tests start real processes.
  testTimeout: 60000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{apps,libs}/*/src/**/*.spec.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/apps/*/test/**/*.test.ts'],
      slowTestThreshold: 30,
      // A nats-server per worker and one migrated database to copy (see the file).
      globalSetup: '<rootDir>/libs/testing/src/integration.global-setup.mjs',
      globalTeardown: '<rootDir>/libs/testing/src/integration.global-teardown.mjs',
    },
  ],
};
