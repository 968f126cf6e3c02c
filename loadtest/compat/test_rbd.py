#!/usr/bin/env python3
"""glint compatibility: the standard clients against a glint whose default store is Ceph RBD.

Each client uploads an image (python-glanceclient sends its body chunked, of unknown size;
openstacksdk and the ``openstack`` CLI send the file), and the image is read back through
glint with the client's checksum verification; then python-glanceclient's 2.17 location calls
(``add_image_location``, ``get_image_locations``, ``glance add-location``) register an HTTP URL; the image names its RBD location
(``direct_url``, ``locations``) the way Nova reads it. The RBD image itself is checked by
the calling test with the ``rbd`` tool (it gets the ids from this script's output).

Env: GLINT_ENDPOINT, GLINT_SCRATCH.
"""

import json
import os
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['glanceclient', 'openstack', 'openstackclient'])

import glanceclient  # noqa: E402
import openstack  # noqa: E402

warnings.filterwarnings('ignore', category=DeprecationWarning)

SUITE = 'rbd'
SIZE = 9 * cc.MiB + 4321


def main(c):
    endpoint, scratch = cc.env_config()
    path = os.path.join(scratch, 'rbd.img')
    md5, sha = cc.make_random_file(path, SIZE)
    made = []

    def check_image(who, image_id):
        gc = glanceclient.Client('2', endpoint=endpoint, token='x')
        got = gc.images.get(image_id)
        c.equal(got['status'], 'active', '%s: active' % who)
        c.equal(got['stores'], 'ceph', '%s: in the rbd store' % who)
        c.equal(got['checksum'], md5, '%s: checksum' % who)
        c.equal(got['os_hash_value'], sha, '%s: os_hash_value' % who)
        url = got.get('direct_url') or ''
        c.check(url.startswith('rbd://') and url.endswith('/%s/snap' % image_id),
                '%s: direct_url is the snapshot of the rbd image' % who, url)
        c.equal([loc['url'] for loc in got.get('locations', [])], [url],
                '%s: locations hold the same url' % who)
        # the verifying iterator checks md5 and os_hash_value
        data = b''.join(gc.images.data(image_id))
        c.equal(len(data), SIZE, '%s: verified download' % who)
        made.append(image_id)
        print('IMAGE %s %s' % (who, image_id), flush=True)

    # python-glanceclient: a chunked upload (the size is not sent)
    gc = glanceclient.Client('2', endpoint=endpoint, token='x')
    img = gc.images.create(name=cc.unique_name(SUITE), disk_format='raw',
                           container_format='bare')
    with open(path, 'rb') as f:
        c.step('glanceclient upload', gc.images.upload, img['id'], f)
    check_image('glanceclient', img['id'])

    # openstacksdk
    conn = openstack.connection.Connection(
        auth_type='none', image_endpoint_override=endpoint, image_api_version='2')
    sdk_img = c.step('sdk create_image', conn.image.create_image,
                     name=cc.unique_name(SUITE), filename=path, disk_format='raw',
                     container_format='bare', wait=True, validate_checksum=True)
    check_image('openstacksdk', sdk_img.id)
    out = os.path.join(scratch, 'rbd-sdk.out')
    c.step('sdk download_image', conn.image.download_image, sdk_img.id, output=out,
           stream=True)
    c.equal(cc.file_hashes(out)[1], md5, 'openstacksdk: downloaded md5')

    # the openstack CLI
    cli = os.path.join(os.path.dirname(sys.executable), 'openstack')
    env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
    base = [cli, '--os-auth-type', 'none', '--os-endpoint', endpoint,
            '--os-image-api-version', '2']
    p = subprocess.run(base + ['image', 'create', '--disk-format', 'raw',
                               '--container-format', 'bare', '--file', path,
                               cc.unique_name(SUITE), '-f', 'json'],
                       env=env, capture_output=True, text=True, timeout=600)
    c.check(p.returncode == 0, 'openstack image create --file', p.stderr[-2000:])
    osc_id = json.loads(p.stdout)['id']
    check_image('openstack CLI', osc_id)
    saved = os.path.join(scratch, 'rbd-osc.out')
    p = subprocess.run(base + ['image', 'save', '--file', saved, osc_id],
                       env=env, capture_output=True, text=True, timeout=600)
    c.check(p.returncode == 0, 'openstack image save', p.stderr[-2000:])
    c.equal(cc.file_hashes(saved)[1], md5, 'openstack CLI: saved md5')

    # API 2.17 through python-glanceclient: a user registers an HTTP URL (glint's own download of
    # the first image; the glint under test has an http store and lets loopback through its
    # filters) with add_image_location, and with `glance add-location --validation-data`
    source = '%s/v2/images/%s/file' % (endpoint, made[0])

    def wait_active(image_id, who):
        import time
        deadline = time.time() + 60
        while time.time() < deadline:
            img = gc.images.get(image_id)
            if img['status'] == 'active':
                return img
            time.sleep(0.2)
        c.fail(who, 'not active within 60 s: %s' % img['status'])

    loc = gc.images.create(name=cc.unique_name(SUITE), disk_format='raw',
                           container_format='bare')
    c.on_exit(gc.images.delete, loc['id'])
    c.step('glanceclient add_image_location', gc.images.add_image_location,
           loc['id'], source)
    got = wait_active(loc['id'], 'add_image_location')
    c.equal(got['size'], SIZE, 'add_image_location: size')
    c.equal(got['os_hash_value'], sha, 'add_image_location: os_hash_value computed')
    listed = c.step('glanceclient get_image_locations', gc.images.get_image_locations,
                    loc['id'])
    c.equal([x['url'] for x in listed], [source], 'get_image_locations lists the URL')
    data = b''.join(gc.images.data(loc['id']))
    c.equal(len(data), SIZE, 'added location: verified download')

    glance = os.path.join(os.path.dirname(sys.executable), 'glance')
    loc2 = gc.images.create(name=cc.unique_name(SUITE), disk_format='raw',
                            container_format='bare')
    c.on_exit(gc.images.delete, loc2['id'])
    p = subprocess.run([glance, '--os-image-url', endpoint, '--os-auth-token', 'x',
                        'add-location', '--url', source, '--validation-data',
                        json.dumps({'os_hash_algo': 'sha512', 'os_hash_value': sha}),
                        loc2['id']],
                       env=env, capture_output=True, text=True, timeout=120)
    c.check(p.returncode == 0, 'glance add-location --validation-data', p.stderr[-2000:])
    got = wait_active(loc2['id'], 'glance add-location')
    c.equal(got['checksum'], md5, 'glance add-location: checksum')


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
