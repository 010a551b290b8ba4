// Packs the agent for customer IT: one archive that installs with `tar` on a machine without the
// repository, npm or network access, holding exactly the production dependencies this repository
// was tested with (npm's own resolution of them: `npm ls --omit=dev`), a CycloneDX SBOM of exactly
// those, the systemd unit, and optionally the Node.js binary it runs on.
//
//   npm run build && node scripts/pack-agent.js [--out DIR] [--include-node]
//
// Writes DIR/hearth-agent-<version>-<os>-<arch>/ (default DIR: .tmp/agent-pack), the same as a
// .tar.gz beside it, and a .tar.gz.sha256 in sha256sum's format; prints a JSON summary. The archive
// is for the platform it is packed on: onnxruntime-node's native binaries for other platforms are
// left out (most of the package's 290 MB), and --include-node copies this machine's `node`.
//
// Hand-written because npm has no command for it: `npm pack` does not bundle a workspace's
// dependencies (they are hoisted to the repository's node_modules and @hearth/contracts is a link),
// and `npm install` on the customer's machine needs a registry and resolves again.
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    out: { type: 'string', default: path.join(repo, '.tmp', 'agent-pack') },
    'include-node': { type: 'boolean', default: false },
  },
});

function fail(message) {
  console.error(`pack-agent: ${message}`);
  process.exit(1);
}

const agentSrc = path.join(repo, 'apps', 'agent');
const contractsSrc = path.join(repo, 'libs', 'contracts');
for (const built of [path.join(agentSrc, 'dist', 'cli.js'), path.join(contractsSrc, 'dist', 'index.js')]) {
  if (!fs.existsSync(built)) fail(`${path.relative(repo, built)} is missing: run "npm run build" first`);
}
const agentPkg = JSON.parse(fs.readFileSync(path.join(agentSrc, 'package.json'), 'utf8'));
const platform = `${process.platform}-${process.arch}`;
const name = `hearth-agent-${agentPkg.version}-${platform}`;
const outDir = path.resolve(values.out);
const bundle = path.join(outDir, name);
fs.rmSync(bundle, { recursive: true, force: true });
fs.mkdirSync(bundle, { recursive: true });

function npm(args) {
  try {
    return execFileSync('npm', [...args, '--workspace', '@hearth/agent', '--loglevel=error'], {
      cwd: repo,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    fail(`npm ${args.join(' ')} failed: ${err.stderr || err.message}`);
  }
}

/** Copies a directory without its nested node_modules (npm lists nested packages on their own). */
function copyPackage(from, to, skip = () => false) {
  fs.cpSync(from, to, {
    recursive: true,
    dereference: true,
    filter: (src) => {
      const rel = path.relative(from, src);
      return rel.split(path.sep)[0] !== 'node_modules' && !skip(rel);
    },
  });
}

const notBuildState = (rel) => rel.endsWith('.tsbuildinfo');

// The agent itself is the archive's root package: package.json, bin/, dist/.
const { devDependencies: _dev, ...rootPkg } = agentPkg;
fs.writeFileSync(path.join(bundle, 'package.json'), `${JSON.stringify(rootPkg, null, 2)}\n`);
copyPackage(path.join(agentSrc, 'bin'), path.join(bundle, 'bin'));
copyPackage(path.join(agentSrc, 'dist'), path.join(bundle, 'dist'), notBuildState);

// Every package npm resolves for the agent's production dependencies, where npm put it.
const modules = path.join(repo, 'node_modules');
const agentModules = path.join(agentSrc, 'node_modules');
const listed = npm(['ls', '--parseable', '--all', '--omit=dev']).split('\n').filter(Boolean);
const lock = JSON.parse(fs.readFileSync(path.join(repo, 'package-lock.json'), 'utf8'));
/** The SBOM's components: every package copied, with its lockfile integrity and license. */
const components = [];
function addComponent(pkgDir, lockKey) {
  const {
    name: pkgName,
    version: pkgVersion,
    license,
  } = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  const locked = lock.packages[lockKey] ?? {};
  const purl = `pkg:npm/${pkgName.replace(/^@/, '%40')}@${pkgVersion}`;
  const integrity = /^sha512-(.+)$/.exec(locked.integrity ?? '');
  components.push({
    type: 'library',
    'bom-ref': `${purl}#${lockKey}`,
    name: pkgName,
    version: pkgVersion,
    purl,
    ...((locked.license ?? license) && { licenses: [{ expression: locked.license ?? license }] }),
    ...(integrity && {
      hashes: [{ alg: 'SHA-512', content: Buffer.from(integrity[1], 'base64').toString('hex') }],
    }),
  });
}

let packages = 0;
for (const dir of new Set(listed)) {
  if (dir === repo || dir === path.join(modules, '@hearth', 'agent')) continue;
  let rel;
  if (dir === path.join(modules, '@hearth', 'contracts')) {
    const to = path.join(bundle, 'node_modules', '@hearth', 'contracts');
    fs.mkdirSync(to, { recursive: true });
    fs.copyFileSync(path.join(contractsSrc, 'package.json'), path.join(to, 'package.json'));
    copyPackage(path.join(contractsSrc, 'dist'), path.join(to, 'dist'), notBuildState);
    addComponent(contractsSrc, 'libs/contracts');
    packages++;
    continue;
  } else if (dir.startsWith(agentModules + path.sep)) {
    rel = path.relative(agentModules, dir);
  } else if (dir.startsWith(modules + path.sep)) {
    rel = path.relative(modules, dir);
  } else {
    fail(`npm placed an agent dependency outside node_modules: ${dir}`);
  }
  if (fs.realpathSync(dir) !== dir)
    fail(`${dir} is a link into the repository; only @hearth/contracts may be`);
  const to = path.join(bundle, 'node_modules', rel);
  if (fs.existsSync(to)) fail(`two agent dependencies map to node_modules/${rel}`);
  copyPackage(dir, to);
  addComponent(dir, path.relative(repo, dir));
  packages++;
}

// onnxruntime-node ships native binaries for every platform; keep this one's.
const ortBin = path.join(bundle, 'node_modules', 'onnxruntime-node', 'bin');
if (fs.existsSync(ortBin)) {
  for (const napi of fs.readdirSync(ortBin)) {
    for (const os of fs.readdirSync(path.join(ortBin, napi))) {
      for (const arch of fs.readdirSync(path.join(ortBin, napi, os))) {
        if (`${os}-${arch}` !== platform) fs.rmSync(path.join(ortBin, napi, os, arch), { recursive: true });
      }
      if (fs.readdirSync(path.join(ortBin, napi, os)).length === 0) fs.rmdirSync(path.join(ortBin, napi, os));
    }
  }
}

// CycloneDX of what the archive holds. Written here rather than by `npm sbom --omit=dev`, which
// leaves out packages that the agent needs and the repository's dev tools share (8 of 72 here).
const agentPurl = `pkg:npm/%40hearth/agent@${agentPkg.version}`;
const sbom = {
  bomFormat: 'CycloneDX',
  specVersion: '1.5',
  serialNumber: `urn:uuid:${randomUUID()}`,
  version: 1,
  metadata: {
    timestamp: new Date().toISOString(),
    tools: { components: [{ type: 'application', name: 'hearth scripts/pack-agent.js' }] },
    component: {
      type: 'application',
      'bom-ref': agentPurl,
      name: '@hearth/agent',
      version: agentPkg.version,
      purl: agentPurl,
    },
  },
  components: components.sort((a, b) => a['bom-ref'].localeCompare(b['bom-ref'])),
};
fs.writeFileSync(path.join(bundle, 'sbom.cdx.json'), `${JSON.stringify(sbom, null, 2)}\n`);
fs.copyFileSync(path.join(repo, 'docker', 'hearth-agent.service'), path.join(bundle, 'hearth-agent.service'));
fs.copyFileSync(path.join(repo, 'README.md'), path.join(bundle, 'README.md'));

// The launcher: the archive's own Node when it has one, else `node` from PATH.
const launcher = path.join(bundle, 'bin', 'hearth-agent');
fs.writeFileSync(
  launcher,
  `#!/bin/sh
# Hearth agent launcher (from scripts/pack-agent.js): runs the agent with the Node.js in this
# archive when it has one (node/bin/node), else with \`node\` from PATH (20.19 or newer).
here=$(dirname -- "$(readlink -f -- "$0")")/..
node="$here/node/bin/node"
if [ ! -x "$node" ]; then
  node=$(command -v node) || {
    echo "hearth-agent: needs Node.js 20.19 or newer: none in this archive (node/bin/node), none on PATH" >&2
    exit 127
  }
fi
exec "$node" "$here/bin/hearth-agent.js" "$@"
`,
  { mode: 0o755 },
);
if (values['include-node']) {
  fs.mkdirSync(path.join(bundle, 'node', 'bin'), { recursive: true });
  fs.copyFileSync(process.execPath, path.join(bundle, 'node', 'bin', 'node'));
  fs.chmodSync(path.join(bundle, 'node', 'bin', 'node'), 0o755);
}

const tarball = `${bundle}.tar.gz`;
execFileSync('tar', ['--owner=0', '--group=0', '--numeric-owner', '-C', outDir, '-czf', tarball, name]);
const sha256 = createHash('sha256').update(fs.readFileSync(tarball)).digest('hex');
fs.writeFileSync(`${tarball}.sha256`, `${sha256}  ${path.basename(tarball)}\n`);
console.log(
  JSON.stringify(
    {
      dir: bundle,
      tarball,
      sha256,
      bytes: fs.statSync(tarball).size,
      packages,
      node: values['include-node'],
      // Present only where onnxruntime-node's install script fetched it (ONNXRUNTIME_NODE_INSTALL=cuda12).
      cudaExecutionProvider: fs
        .readdirSync(path.join(bundle, 'node_modules', 'onnxruntime-node'), { recursive: true })
        .some((f) => path.basename(String(f)).startsWith('libonnxruntime_providers_cuda')),
    },
    null,
    2,
  ),
);
