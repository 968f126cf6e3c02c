#!/usr/bin/env python3
"""glint compatibility: uploads refused by the content inspection, as the clients see them.

python-glanceclient (``images.upload``), openstacksdk (``create_image`` with a file) and
the ``openstack image create --file`` command upload a qcow2 image with a backing file
(``GLINT_HOSTILE_QCOW2``): each gets a 400 naming the safety check and the image stays
``queued``; a valid qcow2 (``GLINT_VALID_QCOW2``, 64 MiB virtual) is stored and shows its
``virtual_size``.

Env: GLINT_ENDPOINT, GLINT_SCRATCH, GLINT_VALID_QCOW2, GLINT_HOSTILE_QCOW2.
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

SUITE = 'inspection'
VIRTUAL = 64 * cc.MiB


def main(c):
    endpoint, scratch = cc.env_config()
    valid = os.environ['GLINT_VALID_QCOW2']
    hostile = os.environ['GLINT_HOSTILE_QCOW2']
    gc = glanceclient.Client('2', endpoint=endpoint, token='x')

    # python-glanceclient
    img = gc.images.create(name=cc.unique_name(SUITE), disk_format='qcow2',
                           container_format='bare')
    c.on_exit(gc.images.delete, img.id)
    try:
        with open(hostile, 'rb') as f:
            gc.images.upload(img.id, f)
        c.fail('glanceclient upload of a qcow2 with a backing file', 'accepted')
    except gc_exc.HTTPBadRequest as e:
        c.check('backing file' in str(e),
                'glanceclient upload of a qcow2 with a backing file: 400 naming it', str(e))
    c.equal(gc.images.get(img.id).status, 'queued', 'glanceclient: the image stays queued')
    with open(valid, 'rb') as f:
        c.step('glanceclient upload of a valid qcow2', gc.images.upload, img.id, f)
    got = gc.images.get(img.id)
    c.equal((got.status, got.virtual_size), ('active', VIRTUAL),
            'glanceclient: active with the virtual size of its header')

    # openstacksdk
    conn = openstack.connection.Connection(
        auth_type='none', image_endpoint_override=endpoint, image_api_version='2')
    name = cc.unique_name(SUITE)
    try:
        conn.image.create_image(name=name, filename=hostile, disk_format='qcow2',
                                container_format='bare', wait=True)
        c.fail('sdk create_image of a qcow2 with a backing file', 'accepted')
    except openstack.exceptions.SDKException as e:
        c.check('backing file' in str(e) or '400' in str(e),
                'sdk create_image of a qcow2 with a backing file fails with the 400', str(e))
    left = [i for i in conn.image.images() if i.name == name]
    for i in left:
        c.on_exit(conn.image.delete_image, i.id)
    c.check(all(i.status == 'queued' for i in left),
            'sdk: what create_image left is queued, with no data',
            repr([(i.id, i.status) for i in left]))
    made = c.step('sdk create_image of a valid qcow2', conn.image.create_image,
                  name=cc.unique_name(SUITE), filename=valid, disk_format='qcow2',
                  container_format='bare', wait=True)
    c.on_exit(conn.image.delete_image, made.id)
    c.equal(conn.image.get_image(made.id).virtual_size, VIRTUAL,
            'sdk: the virtual size')

    # the openstack CLI
    cli = os.path.join(os.path.dirname(sys.executable), 'openstack')
    env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
    name = cc.unique_name(SUITE)
    p = subprocess.run([cli, '--os-auth-type', 'none', '--os-endpoint', endpoint,
                        '--os-image-api-version', '2', 'image', 'create',
                        '--disk-format', 'qcow2', '--container-format', 'bare',
                        '--file', hostile, name],
                       env=env, capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    c.check(p.returncode != 0 and ('backing file' in out or '400' in out),
            'openstack image create --file of a qcow2 with a backing file fails', out[-2000:])
    for i in gc.images.list(filters={'name': name}):
        c.on_exit(gc.images.delete, i.id)
        c.equal(i.status, 'queued', 'openstack CLI: the image it made stays queued')


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
