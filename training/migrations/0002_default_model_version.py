from django.db import migrations


def add_default(apps, schema_editor):
    ModelVersion = apps.get_model("training", "ModelVersion")
    ModelVersion.objects.get_or_create(
        name="smollm2-135m-instruct", defaults={"path": "smollm2-135m-instruct", "is_default": True}
    )


class Migration(migrations.Migration):
    dependencies = [("training", "0001_initial")]

    operations = [migrations.RunPython(add_default, migrations.RunPython.noop)]
