#!/usr/bin/env python3
"""glint compatibility: the ``openstack`` CLI (python-openstackclient).

Drives ``<venv>/bin/openstack --os-auth-type none --os-endpoint $GLINT_ENDPOINT``
through a full image lifecycle with a 64 MiB random raw image: create with
--file, list, show (status/size/checksum/os_hash_*), set --property, save
(byte-for-byte and sha512), delete, show-after-delete fails.

Env: GLINT_ENDPOINT (e.g. http://127.0.0.1:9292), GLINT_SCRATCH (scratch dir).
Run: .venv-compat/bin/python loadtest/compat/test_osc.py
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['openstackclient'])

SUITE = 'osc'
SIZE = 64 * cc.MiB
TIMEOUT = 600


def find_cli():
    cli = os.path.join(os.path.dirname(sys.executable), 'openstack')
    if not os.access(cli, os.X_OK):
        sys.stderr.write('compat: %s not found; run this script with the python of '
                         'the venv made by scripts/compat-venv.sh\n' % cli)
        sys.exit(2)
    return cli


def main(c):
    endpoint, scratch = cc.env_config()
    cli = find_cli()
    # No OS_* variables from the caller's shell (OS_CLOUD, OS_AUTH_URL, ...)
    # may leak into the run: the endpoint comes from the command line only.
    env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
    base = [cli, '--os-auth-type', 'none', '--os-endpoint', endpoint,
            '--os-image-api-version', '2']

    def osc(*args):
        """Run the CLI; return CompletedProcess (never raises on rc != 0)."""
        return subprocess.run(base + list(args), env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)

    def osc_ok(what, *args):
        p = osc(*args)
        if p.returncode != 0:
            c.fail(what, 'openstack %s exited %d: %s' % (
                ' '.join(args), p.returncode, (p.stderr or p.stdout).strip()[-2000:]))
        return p

    def osc_json(what, *args):
        p = osc_ok(what, *args)
        try:
            return json.loads(p.stdout)
        except ValueError as e:
            c.fail(what, 'output is not JSON (%s): %r' % (e, p.stdout[:500]))

    def prop(img, key):
        """A value from `image show -f json`: top level or under 'properties'."""
        if key in img:
            return img[key]
        props = img.get('properties') or {}
        if isinstance(props, str):  # very old osc printed k='v', k2='v2'
            c.fail('parse properties', 'properties is a string: %r' % props)
        return props.get(key)

    src = os.path.join(scratch, 'osc-src.raw')
    md5, sha512 = cc.make_random_file(src, SIZE)
    c.ok('made %d-byte random file %s' % (SIZE, src))

    name = cc.unique_name(SUITE)
    created = osc_json('image create', 'image', 'create', '--disk-format', 'raw',
                       '--container-format', 'bare', '--file', src, name, '-f', 'json')
    image_id = created.get('id')
    c.check(bool(image_id), 'image create --file %s -> id %s' % (name, image_id),
            'no id in output: %r' % created)
    c.on_exit(osc, 'image', 'delete', image_id)
    c.equal(created.get('name'), name, 'image create: name echoed')

    listed = osc_json('image list', 'image', 'list', '-f', 'json')
    c.check(any(i.get('ID') == image_id and i.get('Name') == name for i in listed),
            'image list: new image appears',
            '%s/%s not in %r' % (image_id, name, [(i.get('ID'), i.get('Name')) for i in listed]))

    by_name = osc_json('image list --name', 'image', 'list', '--name', name, '-f', 'json')
    c.equal([i.get('ID') for i in by_name], [image_id], 'image list --name: exactly the new image')

    shown = osc_json('image show', 'image', 'show', '-f', 'json', image_id)
    c.equal(shown.get('status'), 'active', 'image show: status')
    c.equal(shown.get('size'), SIZE, 'image show: size')
    c.equal(shown.get('checksum'), md5, 'image show: checksum == md5(file)')
    c.equal(prop(shown, 'os_hash_algo'), 'sha512', 'image show: os_hash_algo')
    c.equal(prop(shown, 'os_hash_value'), sha512, 'image show: os_hash_value == sha512(file)')
    c.equal(shown.get('disk_format'), 'raw', 'image show: disk_format')
    c.equal(shown.get('container_format'), 'bare', 'image show: container_format')

    shown_by_name = osc_json('image show <name>', 'image', 'show', '-f', 'json', name)
    c.equal(shown_by_name.get('id'), image_id, 'image show <name>: resolves to the id')

    osc_ok('image set --property', 'image', 'set', '--property', 'foo=bar', image_id)
    c.ok('image set --property foo=bar')
    shown = osc_json('image show after set', 'image', 'show', '-f', 'json', image_id)
    c.equal(prop(shown, 'foo'), 'bar', 'image show: property foo=bar')
    c.equal(shown.get('status'), 'active', 'image show after set: still active')

    out = os.path.join(scratch, 'osc-saved.raw')
    if os.path.exists(out):
        os.unlink(out)
    osc_ok('image save', 'image', 'save', '--file', out, image_id)
    c.ok('image save --file %s' % out)
    size, got_md5, got_sha = cc.file_hashes(out)
    c.equal(size, SIZE, 'image save: size of saved file')
    c.equal(got_sha, sha512, 'image save: sha512 of saved file')
    c.equal(got_md5, md5, 'image save: md5 of saved file')
    c.check(cc.files_equal(src, out), 'image save: bytes identical to the original',
            'files differ')

    osc_ok('image delete', 'image', 'delete', image_id)
    c.ok('image delete')

    p = osc('image', 'show', '-f', 'json', image_id)
    c.check(p.returncode != 0, 'image show after delete fails (rc=%d)' % p.returncode,
            'still shown: %s' % p.stdout.strip()[:500])

    listed = osc_json('image list after delete', 'image', 'list', '-f', 'json')
    c.check(all(i.get('ID') != image_id for i in listed), 'image list after delete: gone',
            '%s still listed' % image_id)

    for f in (src, out):
        os.unlink(f)


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
