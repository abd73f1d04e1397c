import json
import logging

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from quart_app import usernames

logger = logging.getLogger("quart_app.migrations")


async def store_skeletons(apps, schema_editor):
    """Give each existing name its skeleton; of look-alike names only the oldest gets it.

    No name is changed or removed: the younger look-alikes keep no skeleton, are logged
    here, and are listed by `quart --app quart_app users lookalikes`.
    """
    User = apps.get_model("models", "User")
    rows = (
        await User.all()
        .using_db(schema_editor.client)
        .order_by("created_at", "id")
        .values_list("id", "username")
    )
    kept = {}
    for user_id, name in rows:
        digest = usernames.skeleton_digest(name)
        if digest in kept:
            logger.warning(
                json.dumps(
                    {
                        "event": "username_lookalike",
                        "user_id": user_id,
                        "username": name,
                        "looks_like_user_id": kept[digest][0],
                        "looks_like": kept[digest][1],
                    },
                    ensure_ascii=False,
                    sort_keys=True,
                )
            )
            continue
        kept[digest] = (user_id, name)
        await (
            User.filter(id=user_id)
            .using_db(schema_editor.client)
            .update(username_skeleton=digest)
        )


class Migration(migrations.Migration):
    dependencies = [("models", "0005_two_factor")]

    initial = False

    operations = [
        ops.AddField(
            model_name="User",
            name="username_skeleton",
            field=fields.CharField(null=True, unique=True, max_length=64),
        ),
        ops.RunPython(store_skeletons, ops.RunPython.noop),
    ]
