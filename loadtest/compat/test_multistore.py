#!/usr/bin/env python3
"""glint compatibility: the multi-store calls of the standard clients.

Against a glint with the stores ``fast`` (file, default), ``swifts3`` and ``ceph``
(S3) and ``sw`` (Swift, native API): python-glanceclient's ``get_stores_info``, ``upload(backend=...)``,
``delete_from_store`` (403 for an image's only location, as Glance); the ``glance`` CLI's
``stores-info``, ``image-create --store`` and ``stores-delete``; openstacksdk's
``conn.image.stores()``. Each upload is downloaded again with checksum
verification on.

Env: GLINT_ENDPOINT, GLINT_SCRATCH.
"""

import os
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['glanceclient', 'openstack'])

import glanceclient  # noqa: E402
from glanceclient import exc as gc_exc  # noqa: E402
import openstack  # noqa: E402

warnings.filterwarnings('ignore', category=DeprecationWarning)

SUITE = 'multistore'
STORES = ['fast', 'swifts3', 'ceph', 'sw']


def main(c):
    endpoint, scratch = cc.env_config()
    gc = glanceclient.Client('2', endpoint=endpoint, token='x')

    info = c.step('get_stores_info', gc.images.get_stores_info)
    ids = [s['id'] for s in info['stores']]
    c.equal(ids, STORES, 'stores listed in enabled_backends order')
    default = [s['id'] for s in info['stores'] if s.get('default') == 'true']
    c.equal(default, ['fast'], 'the default store is marked')

    path = os.path.join(scratch, 'ms.img')
    md5, sha = cc.make_random_file(path, 3 * cc.MiB + 17)
    for store in STORES:
        img = gc.images.create(name=cc.unique_name(SUITE), disk_format='raw',
                               container_format='bare')
        c.on_exit(gc.images.delete, img['id'])
        with open(path, 'rb') as f:
            c.step('upload into %s' % store, gc.images.upload, img['id'], f,
                   backend=store)
        got = gc.images.get(img['id'])
        c.equal(got['stores'], store, 'image is in %s' % store)
        c.equal(got['checksum'], md5, 'checksum of the %s upload' % store)
        body = gc.images.data(img['id'])
        data = b''.join(body)  # the verifying iterator checks os_hash_value
        c.equal(len(data), 3 * cc.MiB + 17, 'verified download from %s' % store)
        try:
            gc.images.delete_from_store(store, img['id'])
            c.fail('delete_from_store of the only location', 'no error')
        except gc_exc.HTTPForbidden:
            c.ok('delete_from_store of the only location: 403')

    # the glance CLI
    cli = os.path.join(os.path.dirname(sys.executable), 'glance')
    base = [cli, '--os-image-url', endpoint, '--os-auth-token', 'x']

    def glance(*args):
        p = subprocess.run(base + list(args), capture_output=True, text=True,
                           timeout=120)
        return p.returncode, p.stdout + p.stderr

    rc, out = glance('stores-info')
    c.check(rc == 0 and all(s in out for s in STORES), 'glance stores-info', out)
    rc, out = glance('image-create', '--name', cc.unique_name(SUITE),
                     '--disk-format', 'raw', '--container-format', 'bare',
                     '--file', path, '--store', 'ceph')
    c.check(rc == 0, 'glance image-create --store ceph', out)
    image_id = None
    for line in out.splitlines():
        cells = [x.strip() for x in line.split('|')]
        if len(cells) > 2 and cells[1] == 'id':
            image_id = cells[2]
        if len(cells) > 2 and cells[1] == 'stores':
            c.equal(cells[2], 'ceph', 'glance image-create shows the store')
    c.check(image_id is not None, 'glance image-create prints the id', out)
    c.on_exit(gc.images.delete, image_id)
    rc, out = glance('stores-delete', '--store', 'ceph', image_id)
    c.check(rc != 0 and 'only store containing it' in out,
            'glance stores-delete of the only location is refused with Glance\'s message', out)

    # openstacksdk
    conn = openstack.connection.Connection(
        auth_type='none', image_endpoint_override=endpoint, image_api_version='2')
    stores = c.step('conn.image.stores()', lambda: list(conn.image.stores()))
    c.equal([s.id for s in stores], STORES, 'sdk store ids')
    c.equal([s.id for s in stores if s.is_default], ['fast'], 'sdk default store')


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
