import { describe, expect, it } from '@jest/globals';
import { builtScript } from './built-script.js';

describe('builtScript', () => {
  it('is beside the module in the build', () => {
    expect(builtScript('file:///opt/hearth-agent/dist/ml/table-loader.js', 'table-worker.js')).toBe(
      '/opt/hearth-agent/dist/ml/table-worker.js',
    );
  });

  it("is the build's copy for a TypeScript source (jest), under the last src folder", () => {
    expect(
      builtScript('file:///home/src/repo/apps/agent/src/serve/serve-workers.ts', 'serve-worker.js'),
    ).toBe('/home/src/repo/apps/agent/dist/serve/serve-worker.js');
  });
});
