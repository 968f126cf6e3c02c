#!/usr/bin/env python3
"""glint compatibility: sharing and filtered listing with the real clients.

1. ``openstack`` CLI (noauth, so the caller is admin): ``image create --shared``,
   ``image set --property``, ``image unset --property``, ``image member list``.
   ``image add project``/``remove project``/``set --project --accept`` look the
   project up in Keystone first, which noauth lacks: the script checks that they
   fail for that reason only and makes the same membership changes through
   openstacksdk.
2. openstacksdk acting as two projects (noauth with ``X-Project-Id``/``X-Roles``
   headers through a keystoneauth session): the owner ``add_member`` /
   ``members`` / ``remove_member``; the member ``get_member`` / ``update_member``
   (accept), after which the image is in its default ``images()`` list;
   ``update_image`` that removes ``owner_specified.*`` properties.
3. python-glanceclient ``images.list(filters=...)`` (what ``glance image-list
   --property-filter/--tag/--visibility/--member-status`` sends), and its
   ``image_members`` calls.

Env: GLINT_ENDPOINT, GLINT_SCRATCH. Run: .venv-compat/bin/python loadtest/compat/test_sharing_osc_sdk.py
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['openstackclient', 'openstack', 'glanceclient'])

import openstack  # noqa: E402
from glanceclient import Client as GlanceClient  # noqa: E402
from keystoneauth1 import session as ks_session  # noqa: E402
from keystoneauth1.noauth import NoAuth  # noqa: E402

SUITE = 'sharing'
TIMEOUT = 300


def sdk_as(endpoint, project, roles='member'):
    sess = ks_session.Session(auth=NoAuth(), additional_headers={
        'X-Project-Id': project, 'X-Roles': roles})
    conn = openstack.connection.Connection(
        session=sess, image_endpoint_override=endpoint, image_api_version='2')
    return conn.image


def glance_as(endpoint, project, roles='member'):
    return GlanceClient('2', endpoint=endpoint, identity_headers={
        'X-Project-Id': project, 'X-Roles': roles, 'X-Auth-Token': 'notused'})


def main(c):
    endpoint, _scratch = cc.env_config()
    cli = os.path.join(os.path.dirname(sys.executable), 'openstack')
    env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
    base = [cli, '--os-auth-type', 'none', '--os-endpoint', endpoint,
            '--os-image-api-version', '2']

    def osc(what, *args):
        p = subprocess.run(base + list(args), env=env, capture_output=True,
                           text=True, timeout=TIMEOUT)
        if p.returncode != 0:
            c.fail(what, 'openstack %s exited %d: %s' % (
                ' '.join(args), p.returncode, (p.stderr or p.stdout).strip()[-2000:]))
        c.ok(what)
        return p.stdout

    # --- 1. openstack CLI ---------------------------------------------------
    name = cc.unique_name(SUITE)
    img = json.loads(osc('image create', 'image', 'create', '--disk-format', 'raw',
                         '--container-format', 'bare', '--shared',
                         '--property', 'os_distro=cirros', '-f', 'json', name))
    image_id = img['id']
    c.on_exit(lambda: subprocess.run(base + ['image', 'delete', image_id],
                                     env=env, capture_output=True))
    osc('image set --property', 'image', 'set', '--property', 'hw.disk_bus=scsi',
        '--property', 'empty=', image_id)
    shown = json.loads(osc('image show', 'image', 'show', '-f', 'json', image_id))
    props = shown.get('properties') or {}
    c.equal((props.get('hw.disk_bus'), props.get('empty')), ('scsi', ''),
            'image show: dotted and empty-string properties')
    osc('image unset --property', 'image', 'unset', '--property', 'hw.disk_bus', image_id)
    shown = json.loads(osc('image show', 'image', 'show', '-f', 'json', image_id))
    c.check('hw.disk_bus' not in (shown.get('properties') or {}),
            'image unset removed the property', repr(shown.get('properties')))
    # `image add project`, `image remove project` and `image set --project --accept`
    # resolve the project through Keystone (GET /v2/tenants…), which a noauth deployment
    # does not have (Glance would fail the same way): check that this is the only reason
    # they fail, then make the membership with openstacksdk and read it back with the CLI.
    p = subprocess.run(base + ['image', 'add', 'project', image_id, 'proj-b'], env=env,
                       capture_output=True, text=True, timeout=TIMEOUT)
    c.check(p.returncode != 0, 'image add project needs Keystone for the project lookup',
            'unexpectedly succeeded without Keystone')
    admin = sdk_as(endpoint, 'admin-project', roles='admin')
    c.step('sdk add_member (admin) for the CLI image', admin.add_member, image_id,
           member_id='proj-b')
    members = json.loads(osc('image member list', 'image', 'member', 'list', '-f', 'json',
                             image_id))
    c.equal([(m.get('Member ID'), m.get('Status')) for m in members],
            [('proj-b', 'pending')], 'image member list: pending member')
    c.step('sdk update_member accept (admin)', admin.update_member, 'proj-b', image_id,
           status='accepted')
    members = json.loads(osc('image member list (after accept)', 'image', 'member', 'list',
                             '-f', 'json', image_id))
    c.equal([m.get('Status') for m in members], ['accepted'], 'member accepted')
    c.step('sdk remove_member (admin)', admin.remove_member, 'proj-b', image_id)
    members = json.loads(osc('image member list (after remove)', 'image', 'member', 'list',
                             '-f', 'json', image_id))
    c.equal(members, [], 'no members left')

    # --- 2. openstacksdk as two projects --------------------------------------
    owner = sdk_as(endpoint, 'sdk-owner')
    member = sdk_as(endpoint, 'sdk-member')
    stranger = sdk_as(endpoint, 'sdk-stranger')
    image = c.step('sdk create_image (owner)', owner.create_image, name=cc.unique_name(SUITE),
                   disk_format='raw', container_format='bare', visibility='shared',
                   data=b'shared-bytes', validate_checksum=False)
    c.on_exit(lambda: owner.delete_image(image.id, ignore_missing=True))
    m = c.step('sdk add_member', owner.add_member, image.id, member_id='sdk-member')
    c.equal(m.status, 'pending', 'sdk add_member: pending')
    ids = [i.id for i in member.images()]
    c.check(image.id not in ids, 'pending image not in member default list')
    got = c.step('sdk get_member (member)', member.get_member, 'sdk-member', image.id)
    c.equal(got.status, 'pending', 'member sees its membership')
    m = c.step('sdk update_member accept', member.update_member, 'sdk-member', image.id,
               status='accepted')
    c.equal(m.status, 'accepted', 'sdk update_member: accepted')
    ids = [i.id for i in member.images()]
    c.check(image.id in ids, 'accepted image in member default list')
    listed = c.step('sdk members (owner)', lambda: list(owner.members(image.id)))
    c.equal([x.member_id for x in listed], ['sdk-member'], 'owner lists the member')
    try:
        stranger.get_image(image.id)
        c.fail('stranger get_image', 'no exception')
    except openstack.exceptions.NotFoundException:
        c.ok('stranger get_image -> NotFoundException')
    data = c.step('sdk download_image (member)', member.download_image, image.id)
    c.equal(data.content if hasattr(data, 'content') else data, b'shared-bytes',
            'member downloads the shared bytes')
    updated = c.step('sdk update_image (owner)', owner.update_image, image.id,
                     name='renamed-by-sdk')
    c.equal(updated.name, 'renamed-by-sdk', 'sdk update_image')
    c.step('sdk remove_member', owner.remove_member, 'sdk-member', image.id)
    ids = [i.id for i in member.images()]
    c.check(image.id not in ids, 'removed member no longer lists the image')

    # --- 3. glanceclient image-list filters -----------------------------------
    gc = glance_as(endpoint, 'gc-owner')
    gm = glance_as(endpoint, 'gc-member')
    tag = cc.unique_name('tag')
    a = c.step('glanceclient create a', gc.images.create, name='gc-a', tags=[tag, 'x'],
               os_distro='ubuntu', visibility='shared')
    b = c.step('glanceclient create b', gc.images.create, name='gc-b', tags=[tag],
               os_hidden=True)
    c.on_exit(lambda: [gc.images.delete(i) for i in (a.id, b.id)])

    def ids_of(client, **filters):
        return sorted(i.id for i in client.images.list(filters=filters))

    c.equal(ids_of(gc, tag=[tag]), [a.id], 'image-list --tag (hidden left out)')
    c.equal(ids_of(gc, tag=[tag, 'x']), [a.id], 'image-list --tag --tag (AND)')
    c.equal(ids_of(gc, tag=[tag], os_hidden=True), [b.id], 'image-list --hidden')
    c.equal(ids_of(gc, tag=[tag], os_distro='ubuntu'), [a.id],
            'image-list --property-filter os_distro=ubuntu')
    c.equal(ids_of(gc, tag=[tag], name='in:gc-a,gc-b'), [a.id], 'image-list name=in:')
    c.equal(ids_of(gc, tag=[tag], visibility='shared'), [a.id], 'image-list --visibility')
    c.step('glanceclient image_members.create', gc.image_members.create, a.id, 'gc-member')
    c.equal(ids_of(gm, tag=[tag], member_status='pending'), [a.id],
            'image-list --member-status pending (member)')
    c.step('glanceclient image_members.update accept', gm.image_members.update, a.id,
           'gc-member', 'accepted')
    c.equal(ids_of(gm, tag=[tag]), [a.id], 'accepted image in member list')
    listed = c.step('glanceclient image_members.list',
                    lambda: list(gc.image_members.list(a.id)))
    c.equal([(x.member_id, x.status) for x in listed], [('gc-member', 'accepted')],
            'owner lists the accepted member')


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
